"""Deciding a batch in log order: the mutations, their outcomes, and the numbering of one writer's batches.

:func:`sequence_batch` numbers a batch and decides its preconditions, deadlines and
leases against the applied state, for the logs with one writer (the file and
memory logs); the PostgreSQL write function decides the same way, in the database.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple, Protocol, TypeAlias, cast

from tuco.core.events import Event, EventType, Expiry, Lifetime, Precondition
from tuco.core.origin import Origin, stamped
from tuco.core.txn import Txn, TxnOutcome, TxnState, decide_batch
from tuco.errors import LeaseNotFoundError, PreconditionFailedError

__all__ = ["TXN_EXPIRY", "ExpiryState", "Mutation", "Outcome", "has_conditions", "sequence_batch", "wall_clock_ms"]

TXN_EXPIRY: Final = Expiry()
"""A transaction's mutation carries it: a batch holding one is never taken for a plain one."""


class Mutation(NamedTuple):
    """A write waiting to be committed, and what the key must look like for it to happen."""

    type: EventType
    key: str
    value: bytes
    precondition: Precondition | None = None
    expiry: Expiry | None = None
    """A deadline, a lease or an expired-only condition; None for an ordinary write (and every lease-free one)."""
    txn: Txn | None = None
    """A transaction (type TXN): always alone in its batch, decided against the state every earlier batch left."""
    origin: Origin | None = None
    """Who asked and why; its ``at`` is set when the log decides the write (by the log's clock)."""


Outcome: TypeAlias = Event | PreconditionFailedError | LeaseNotFoundError | TxnOutcome
"""What became of one mutation of a batch: its event, or why its precondition (or missing lease) refused it.

A transaction's is its :class:`~tuco.core.txn.TxnOutcome` (or LeaseNotFoundError)."""


_EVENT: Final = Event  # Final: a C static in the compiled build, not a dict lookup per event (tuco.http.observer)
_new: Final = tuple.__new__  # builds a NamedTuple without its Python-level __new__: these are made per write


_expiry_of: Final = operator.itemgetter(4)
_origin_of: Final = operator.itemgetter(6)


def has_conditions(batch: Sequence[Mutation]) -> bool:
    """Whether any mutation of ``batch`` has a condition or a deadline to decide (most have none).

    A Precondition is a non-empty tuple, true even for ABSENT; an Expiry is an object, always true. One scan,
    compiled to a loop: two ``any(map(itemgetter))`` scans cost some 1,700 instructions a write (bench/instructions.py).
    """
    return any(mutation[3] or mutation[4] for mutation in batch)


def wall_clock_ms() -> int:
    """This machine's clock in Unix milliseconds: what the file and memory logs decide expiry by."""
    return time.time_ns() // 1_000_000


class ExpiryState(Protocol):
    """What a one-writer log reads of the applied state to decide expiry (the store, through the sink)."""

    def key_expiry(self, key: str) -> int | None:
        """When ``key`` expires (Unix ms; 0 if its lease is gone), or None if it has no deadline."""
        ...

    def lease(self, id: int) -> tuple[int, int] | None:
        """A live-or-expired lease's ``(ttl, deadline)``, or None if there is no such lease."""
        ...


def sequence_batch(
    batch: Sequence[Mutation],
    first: int,
    mod_revision: Callable[[str], int],
    expiry: ExpiryState | None = None,
    now: Callable[[], int] = wall_clock_ms,
) -> list[Outcome]:
    """Number a batch from ``first``, deciding each precondition against the state before it.

    For logs with one writer (the file and memory logs): ``mod_revision`` is
    the applied state, which holds every earlier batch; a key written earlier
    in this batch is judged by that write. Mutations with an ``expiry`` are
    decided with ``expiry`` (the applied deadlines and leases) and the clock ``now``.
    """
    if not has_conditions(batch):
        origin = batch[0][6] if batch else None
        if list(map(_origin_of, batch)).count(origin) == len(batch):  # one origin (or none) for all: the common case
            if origin is not None:
                origin = stamped(origin, now())
            return [_new(_EVENT, (first + i, m[0], m[1], m[2], 0, 0, None, origin)) for i, m in enumerate(batch)]
        at = now()
        events: list[Outcome] = []
        append = events.append
        last: Origin | None = None
        at_moment: Origin | None = None
        for i, m in enumerate(batch):  # writes of one principal share one stamped origin (the common case)
            origin = m[6]
            if origin is not last:
                last = origin
                at_moment = stamped(origin, at)
            append(_new(_EVENT, (first + i, m[0], m[1], m[2], 0, 0, None, at_moment)))
        return events
    return stamp_origins(batch, _decide(batch, first, mod_revision, expiry, now), now)


def stamp_origins(batch: Sequence[Mutation], outcomes: list[Outcome], now: Callable[[], int]) -> list[Outcome]:
    """Each outcome's event with its mutation's origin, at ``now()`` (one moment for the batch).

    ``outcomes`` has one outcome per mutation, in order: a refusal keeps no origin.
    """
    if not any(map(_origin_of, batch)):
        return outcomes
    at = now()
    with_origins: list[Outcome] = []
    for m, outcome in zip(batch, outcomes, strict=True):
        origin = stamped(m[6], at)
        if origin is not None and isinstance(outcome, Event):
            outcome = _new(_EVENT, (*outcome[:7], origin))
        elif origin is not None and isinstance(outcome, TxnOutcome) and outcome.event is not None:
            outcome = outcome._replace(event=outcome.event._replace(origin=origin))
        with_origins.append(outcome)
    return with_origins


def _decide(
    batch: Sequence[Mutation],
    first: int,
    mod_revision: Callable[[str], int],
    expiry: ExpiryState | None,
    now: Callable[[], int],
) -> list[Outcome]:
    """The outcomes of a batch with conditions or deadlines, one per mutation."""
    if any(map(_expiry_of, batch)):
        if batch[0].txn is not None:  # only transactions in this batch (the group commit cuts batches so)
            return list(
                decide_batch([m.txn for m in batch if m.txn is not None], cast("TxnState", expiry), first, now())
            )
        return _ExpiryJudge(mod_revision, expiry, now()).sequence(batch, first)
    outcomes: list[Outcome] = []
    written: dict[str, int] = {}
    sequence = first
    put = EventType.PUT
    for m in batch:
        if m.precondition is not None:
            current = written[m.key] if m.key in written else mod_revision(m.key)
            if not m.precondition.holds(current):
                outcomes.append(PreconditionFailedError(m.key, current))
                continue
        outcomes.append(Event(sequence, m.type, m.key, m.value))
        written[m.key] = sequence if m.type is put else 0
        sequence += 1
    return outcomes


class _ExpiryJudge:
    """Decides a batch with deadlines and leases in log order, as the PostgreSQL write function does."""

    def __init__(self, mod_revision: Callable[[str], int], state: ExpiryState | None, now: int) -> None:
        self.mod_revision = mod_revision
        self.state = state
        self.now = now
        self.keys: dict[str, int] = {}  # mod_revision after this batch's writes of the key
        self.key_expiry: dict[str, tuple[int, int] | None] = {}  # (own deadline, lease) after them; None: none
        self.leases: dict[int, tuple[int, int] | None] = {}  # (ttl, deadline) after them; None: revoked

    def _lease(self, id: int) -> tuple[int, int] | None:
        if id in self.leases:
            return self.leases[id]
        return self.state.lease(id) if self.state is not None and id else None

    def _expires_at(self, key: str) -> int | None:
        if key in self.key_expiry:
            found = self.key_expiry[key]
            if found is None:
                return None
            deadline, lease = found
            if lease:
                known = self._lease(lease)
                return known[1] if known is not None else 0
            return deadline
        return self.state.key_expiry(key) if self.state is not None else None

    def sequence(self, batch: Sequence[Mutation], first: int) -> list[Outcome]:
        outcomes: list[Outcome] = []
        sequence = first
        now = self.now
        for m in batch:
            type, key, expiry = m.type, m.key, m.expiry
            if type is EventType.PUT or type is EventType.DELETE:
                current = self.keys[key] if key in self.keys else self.mod_revision(key)
                if m.precondition is not None and not m.precondition.holds(current):
                    outcomes.append(PreconditionFailedError(key, current))
                    continue
                if type is EventType.DELETE:
                    if expiry is not None and expiry.expired:
                        expires_at = self._expires_at(key) if current else None
                        if expires_at is None or expires_at > now:  # not expired by this log's clock
                            outcomes.append(PreconditionFailedError(key, current))
                            continue
                    event = Event(sequence, type, key)
                    self.keys[key] = 0
                    self.key_expiry[key] = None
                elif expiry is not None and expiry.lease:
                    lease = self._lease(expiry.lease)
                    if lease is None or lease[1] <= now:
                        outcomes.append(LeaseNotFoundError(expiry.lease))
                        continue
                    event = Event(sequence, type, key, m.value, 0, 0, Lifetime(0, expiry.lease))
                    self.keys[key] = sequence
                    self.key_expiry[key] = (0, expiry.lease)
                elif expiry is not None and expiry.ttl:
                    event = Event(sequence, type, key, m.value, 0, 0, Lifetime(now + expiry.ttl))
                    self.keys[key] = sequence
                    self.key_expiry[key] = (now + expiry.ttl, 0)
                else:
                    event = Event(sequence, type, key, m.value)
                    self.keys[key] = sequence
                    self.key_expiry[key] = None
            elif type is EventType.TOKEN_CREATE or type is EventType.TOKEN_REVOKE:
                event = Event(
                    sequence, type, key, m.value
                )  # the service checked the registry; replay tolerates repeats
            elif type is EventType.LEASE_GRANT:
                ttl = expiry.ttl if expiry is not None else 0
                # The grant's value is its owner (empty for none): recorded with it, so every replica knows it.
                event = Event(sequence, type, "", m.value, 0, 0, Lifetime(now + ttl, sequence, ttl))
                self.leases[sequence] = (ttl, now + ttl)
            else:
                id = expiry.lease if expiry is not None else 0
                lease = self._lease(id)
                if lease is None or (type is EventType.LEASE_KEEPALIVE and lease[1] <= now):
                    outcomes.append(LeaseNotFoundError(id))
                    continue
                if type is EventType.LEASE_KEEPALIVE:
                    event = Event(sequence, type, "", b"", 0, 0, Lifetime(now + lease[0], id, lease[0]))
                    self.leases[id] = (lease[0], now + lease[0])
                else:
                    if expiry is not None and expiry.expired and lease[1] > now:
                        outcomes.append(PreconditionFailedError("", 0))  # kept alive meanwhile: not expired
                        continue
                    event = Event(sequence, type, "", b"", 0, 0, Lifetime(0, id))
                    self.leases[id] = None
            outcomes.append(event)
            sequence += 1
        return outcomes
