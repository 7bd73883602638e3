"""Events are what the transaction log records: one mutation each, in sequence.

The sequence of an event is the store's revision after it: revisions and log
sequences are the same numbers, on every backend.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = ["ABSENT", "EXISTS", "Entry", "Event", "EventType", "Precondition"]


class EventType(IntEnum):
    """Kinds of mutation. The numbers are written to disk: only ever append new ones."""

    PUT = 1
    DELETE = 2


class Event(NamedTuple):
    """One mutation with its place in the log.

    A NamedTuple rather than a dataclass: replay creates millions of these and
    tuple construction is the cheapest immutable record Python has.
    ``create_revision`` and ``version`` are 0 when the store is to derive them
    from the history it replays; a log that keeps only the latest event per
    key (a compacted file, PostgreSQL's state table) carries them explicitly.
    """

    sequence: int
    type: EventType
    key: str
    value: bytes = b""
    create_revision: int = 0
    version: int = 0


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
