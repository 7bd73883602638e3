"""Who made a change, when, and (for a delete) why: what "who changed what" shows.

An origin is recorded with the change it describes, by the log that records
the change; events replayed from a log written before origins existed carry
none (unknown). Pure: the moment is handed in by the log, never read here.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from tuco.core._untrack import untracked as _untracked

__all__ = [
    "ANONYMOUS",
    "EXPIRER",
    "LEASE_REVOKE",
    "MAX_BY_BYTES",
    "REASONS",
    "Origin",
    "Reason",
    "clip_by",
    "new_origin",
    "origin_fields",
    "stamped",
]

ANONYMOUS = "anonymous"
"""The principal of a change made with authentication off."""

EXPIRER = "expirer"
"""The principal of a delete (or lease revoke) the expirer wrote because a deadline passed."""

LEASE_REVOKE = "lease-revoke"
"""The principal of the deletes of a revoked lease's keys, when no caller is known."""

MAX_BY_BYTES = 1024
"""The longest principal name recorded, in UTF-8 bytes: a certificate identity longer than this is cut."""


class Reason:
    """Why a key was deleted. The numbers are written to the log: only ever append new ones.

    Plain ints, not an IntEnum: an enum member is an object the cyclic
    collector tracks, and the history keeps an origin per change, untracked
    only while it holds nothing but strings and ints.
    """

    NONE: Final = 0
    """Not a delete (or not known)."""
    DELETED: Final = 1
    EXPIRED: Final = 2
    LEASE_REVOKED: Final = 3
    RANGE_DELETE: Final = 4


REASONS = ("", "deleted", "expired", "lease_revoked", "range_delete")
"""The name of each reason by its number, as watch events, the history and the dump show it."""


Origin: TypeAlias = tuple[str, int, int]
"""Who (``by``: token id, certificate identity, ``expirer``, ``lease-revoke`` or ``anonymous``), when (``at``, Unix
milliseconds by the log's clock) and why (``reason``, a :class:`Reason` number, for a delete): ``(by, at, reason)``.

Never a token's secret: ``by`` is the token's id. A plain tuple, not a NamedTuple: the cyclic collector
untracks an exact tuple of strings and ints (and then the history's entry holding it), never a subclass's
instance; a NamedTuple here cost every PUT about 1,300 instructions of collection (bench/instructions.py).
"""


def new_origin(by: str, at: int = 0, reason: int = Reason.NONE) -> Origin:
    """An origin: ``at`` 0 until the log stamps the moment it commits the change."""
    return (by, at, reason)


def stamped(origin: Origin | None, at: int) -> Origin | None:
    """``origin`` at the moment ``at`` the log committed its change (None, unknown, stays None)."""
    if origin is None:
        return None
    moment = (origin[0], at, origin[2])
    untrack = _untracked  # one per batch, kept in each change of it: see tuco.core._untrack
    return moment if untrack is None else untrack(moment)


def clip_by(name: str) -> str:
    """``name`` cut to :data:`MAX_BY_BYTES` UTF-8 bytes (on a character boundary): a bound on what a record carries."""
    data = name.encode("utf-8")
    if len(data) <= MAX_BY_BYTES:
        return name
    return data[:MAX_BY_BYTES].decode("utf-8", errors="ignore")


def origin_fields(origin: Origin | None, deleted: bool) -> dict[str, object]:
    """``by`` and ``at``, and for a delete ``reason`` (``deleted`` unless the origin says otherwise); {} if unknown.

    What watch events, the history and the dump show: additive JSON fields.
    """
    if origin is None:
        return {}
    by, at, reason = origin
    fields: dict[str, object] = {"by": by, "at": at}
    if deleted:
        fields["reason"] = REASONS[reason] or REASONS[Reason.DELETED]
    return fields
