"""Events are what the transaction log records: one mutation each, in sequence.

The sequence of an event is the store's revision after it: revisions and log
sequences are the same numbers, on every backend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import NamedTuple, overload

from tuco.core.origin import Origin

__all__ = ["ABSENT", "EXISTS", "Entry", "Event", "EventType", "Expiry", "Lifetime", "PlainWrites", "Precondition"]


class EventType(IntEnum):
    """Kinds of mutation. The numbers are written to disk: only ever append new ones."""

    PUT = 1
    DELETE = 2
    # 3 is the file codec's compacted entry, never an event.
    LEASE_GRANT = 4
    """A lease was granted: its id is ``lease`` (the event's own sequence), with ``ttl`` and ``deadline``."""
    LEASE_KEEPALIVE = 5
    """Lease ``lease`` lives on until ``deadline``."""
    LEASE_REVOKE = 6
    """Lease ``lease`` is gone (revoked, or expired); its keys were deleted by DELETEs before it."""
    TOKEN_CREATE = 7
    """A token was created: its id is ``key``, its record (grants, the secret's digest, never the secret) ``value``."""
    TOKEN_REVOKE = 8
    """Token ``key`` is revoked."""
    TXN = 9
    """A transaction's writes, all at this one revision: ``value`` holds them (:func:`tuco.core.txn.decode_writes`)."""


class Lifetime(NamedTuple):
    """When a PUT's key or a lease ends: ``deadline`` (absolute Unix ms, 0: the lease decides), its ``lease``, ``ttl``.

    For a PUT, ``deadline`` is the key's own (``?ttl=``) or ``lease`` the lease it
    is attached to; for a lease event, ``lease`` is the lease, ``deadline`` its
    end, ``ttl`` (ms) its time to live.
    """

    deadline: int = 0
    lease: int = 0
    ttl: int = 0


class Event(NamedTuple):
    """One mutation with its place in the log.

    A NamedTuple rather than a dataclass: replay creates millions of these and
    tuple construction is the cheapest immutable record Python has.
    ``create_revision`` and ``version`` are 0 when the store is to derive them
    from the history it replays; a log that keeps only the latest event per
    key (a compacted file, PostgreSQL's state table) carries them explicitly.

    ``lifetime`` is None on every event without a deadline or a lease: one
    field, not three, so an ordinary event is a tuple no bigger than before
    expiry existed (replay builds a million of them in a second or two).
    ``deadline``, ``lease`` and ``ttl`` read it (0 without one).
    ``origin`` (who, when, why) is None where it is not known: a log written
    before origins were recorded, or a compacted entry.
    """

    sequence: int
    type: EventType
    key: str
    value: bytes = b""
    create_revision: int = 0
    version: int = 0
    lifetime: Lifetime | None = None
    origin: Origin | None = None

    @property
    def deadline(self) -> int:
        """When the key (or lease) ends, absolute Unix ms; 0 for none (a leased key: its lease's)."""
        lifetime = self.lifetime
        return lifetime.deadline if lifetime is not None else 0

    @property
    def lease(self) -> int:
        """The lease a PUT attaches its key to, or a lease event is about; 0 for none."""
        lifetime = self.lifetime
        return lifetime.lease if lifetime is not None else 0

    @property
    def ttl(self) -> int:
        """A lease event's time to live in ms; 0 otherwise."""
        lifetime = self.lifetime
        return lifetime.ttl if lifetime is not None else 0


class PlainWrites(Sequence[Event]):
    """A run of PUTs and DELETEs without a deadline, at consecutive sequences from ``first_sequence``.

    Most of a log is such a run, and start-up replay is the time a store is
    unavailable: the decoder appends each write to three lists instead of
    building an :class:`Event`, and :meth:`Store.apply_batch
    <tuco.core.store.Store.apply_batch>` applies the lists in one loop. Read as
    a sequence, it makes the events the records hold, so any other reader of a
    log sees what it always saw.
    """

    __slots__ = ("first_sequence", "keys", "origins", "values")

    def __init__(self, first_sequence: int) -> None:
        self.first_sequence = first_sequence
        self.keys: list[str] = []
        self.values: list[bytes | None] = []
        """Each write's value; None for a DELETE."""
        self.origins: list[Origin | None] = []

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [self._event(i) for i in range(len(self.keys))[index]]
        return self._event(range(len(self.keys))[index])

    def __iter__(self) -> Iterator[Event]:
        for i in range(len(self.keys)):
            yield self._event(i)

    def _event(self, i: int) -> Event:
        value = self.values[i]
        kind = EventType.DELETE if value is None else EventType.PUT
        return Event(self.first_sequence + i, kind, self.keys[i], value or b"", origin=self.origins[i])


class Entry(NamedTuple):
    """A key's current value and revisions, as etcd names them.

    ``create_revision`` is the revision that created the key (since its last
    deletion), ``mod_revision`` the one that last wrote it, ``version`` the
    number of writes since it was created.
    """

    value: bytes
    create_revision: int
    mod_revision: int
    version: int


class Precondition(NamedTuple):
    """What a conditional write requires of the key's current ``mod_revision`` (0 when absent).

    ``Precondition(n)`` is ``If-Match: "n"``, :data:`EXISTS` is ``If-Match: *``
    and :data:`ABSENT` is ``If-None-Match: *``. Logs decide it in log order,
    atomically with the write.
    """

    mod_revision: int

    def holds(self, current: int) -> bool:
        """Whether a key whose mod_revision is ``current`` (0: absent) satisfies it."""
        if self.mod_revision < 0:
            return current != 0
        return current == self.mod_revision


EXISTS = Precondition(-1)
"""The key must exist, whatever its revision."""

ABSENT = Precondition(0)
"""The key must not exist (a create-only write)."""


class Expiry(NamedTuple):
    """What a write asks of expiry, decided by the log with its clock (PostgreSQL: the database's).

    ``ttl`` (ms): a PUT's key expires that long after the log records it; a
    grant's lease lives that long. ``lease``: the lease a PUT attaches its key
    to, or the lease a keepalive or revoke is about. ``expired``: a DELETE or
    revoke that happens only if the key's (lease's) deadline has passed, by
    the log's clock, when it is decided: the expirer's writes, so that no
    replica expires a key early or one kept alive meanwhile.
    """

    ttl: int = 0
    lease: int = 0
    expired: bool = False
