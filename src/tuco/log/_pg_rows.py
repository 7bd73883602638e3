"""The PostgreSQL log's sans-IO part: rows in, events and outcomes out, as pure functions.

The arguments a batch is written with, the outcomes decoded from what the write
function returns, the events of ``tuco_events`` rows and bootstrap's merge of
leases among keys; :mod:`tuco.log.postgres` is the asyncpg shell around them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuco.core.events import Event, EventType, Lifetime
from tuco.core.origin import stamped
from tuco.errors import LeaseNotFoundError, PreconditionFailedError
from tuco.log._pg_origins import stored_origin
from tuco.log.batching import Mutation, Outcome

__all__ = [
    "event_of",
    "expected_revisions",
    "expiring_outcomes",
    "expiry_arguments",
    "merge_leases",
    "numbered_outcomes",
    "origin_arguments",
    "written_events",
]

_new = tuple.__new__


def expected_revisions(batch: Sequence[Mutation]) -> list[int | None] | None:
    """The write function's ``expected`` argument: each mutation's required mod_revision; None if none has one."""
    if all(m.precondition is None for m in batch):
        return None
    return [None if m.precondition is None else m.precondition.mod_revision for m in batch]


def origin_arguments(batch: Sequence[Mutation]) -> tuple[list[str | None] | None, list[int | None] | None]:
    """The write function's ``bys`` and ``reasons`` (version 8): each mutation's principal and reason; None if none."""
    if all(m.origin is None for m in batch):
        return None, None
    return [None if m.origin is None else m.origin[0] for m in batch], [
        None if m.origin is None else m.origin[2] for m in batch
    ]


def written_events(batch: Sequence[Mutation], first: int, at: int) -> list[Outcome]:
    """The events of a batch written whole from sequence ``first``, each with its origin at ``at`` (Unix ms)."""
    if all(m.origin is None for m in batch):
        return [_new(Event, (first + i, m[0], m[1], m[2], 0, 0, None, None)) for i, m in enumerate(batch)]
    return [_new(Event, (first + i, m[0], m[1], m[2], 0, 0, None, stamped(m.origin, at))) for i, m in enumerate(batch)]


def numbered_outcomes(batch: Sequence[Mutation], first: int, refused: Mapping[int, int], at: int = 0) -> list[Outcome]:
    """Number the written mutations from ``first``; ``refused`` maps 1-based ordinals to the revision they met."""
    outcomes: list[Outcome] = []
    sequence = first
    for n, m in enumerate(batch, 1):
        current = refused.get(n)
        if current is None:
            outcomes.append(Event(sequence, m.type, m.key, m.value, origin=stamped(m.origin, at)))
            sequence += 1
        else:
            outcomes.append(PreconditionFailedError(m.key, current))
    return outcomes


def expiry_arguments(batch: Sequence[Mutation]) -> tuple[list[int | None], list[int | None], list[bool]]:
    """The eight-argument write function's ttls, leases and expired flags (see :mod:`tuco.log._pg_schema`)."""
    ttls: list[int | None] = []
    leases: list[int | None] = []
    expired: list[bool] = []
    for m in batch:
        expiry = m.expiry
        ttls.append(expiry.ttl or None if expiry is not None else None)
        leases.append(expiry.lease or None if expiry is not None else None)
        expired.append(expiry is not None and expiry.expired)
    return ttls, leases, expired


def expiring_outcomes(batch: Sequence[Mutation], events: list[Event], refused: Mapping[int, int]) -> list[Outcome]:
    """Match the events read back to the written mutations; a refusal at revision -1 is a missing lease."""
    outcomes: list[Outcome] = []
    written = iter(events)
    for n, m in enumerate(batch, 1):
        current = refused.get(n)
        if current is None:
            outcomes.append(next(written))
        elif current < 0:
            outcomes.append(LeaseNotFoundError(m.expiry.lease if m.expiry is not None else 0))
        else:
            outcomes.append(PreconditionFailedError(m.key, current))
    return outcomes


def merge_leases(batch: list[Event], leases: list[Event]) -> tuple[list[Event], list[Event]]:
    """Put the leases granted before the batch's last key in place among its keys; return the rest of the leases."""
    last = batch[-1].sequence
    merged: list[Event] = []
    pending = iter(leases)
    lease = next(pending, None)
    for event in batch:
        while lease is not None and lease.sequence < event.sequence:
            merged.append(lease)
            lease = next(pending, None)
        merged.append(event)
    rest = ([lease] if lease is not None and lease.sequence > last else []) + list(pending)
    return merged, rest


def event_of(row: Any) -> Event:
    """The event of a ``tuco_events`` row (as :data:`~tuco.log._pg_schema.EVENTS_AFTER` selects it).

    A row without an origin (written before schema version 8) has none: unknown, as on the file log.
    """
    origin = stored_origin(row[8], row[9], row[4]) if len(row) > 8 else None
    if len(row) > 5 and (row[5] is not None or row[6] is not None):
        lifetime = Lifetime(row[5] or 0, row[6] or 0, row[7] or 0)
        return Event(row[0], EventType(row[1]), row[2].decode(), row[3], 0, 0, lifetime, origin)
    return Event(row[0], EventType(row[1]), row[2].decode(), row[3], origin=origin)
