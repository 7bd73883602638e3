"""The PostgreSQL log's schema version 8: who made each change and why, beside the change's event.

``tuco_events`` gains two nullable columns, ``origin_by`` (the principal: a
token's id, a certificate's identity, ``expirer``, ``lease-revoke`` or
``anonymous``; never a secret) and ``origin_reason`` (a
:class:`~tuco.core.origin.Reason` number). The moment is the row's
``committed_at``, which every row has had since version 1: no third column.
Rows written before version 8, or by a version 7 replica during a rolling
upgrade, have ``origin_by`` NULL and read as unknown, as a file log's records
written before origins do. Adding nullable columns without a default rewrites
nothing, so the migration of a large log is instant.

The write functions take the origins as two more arguments (parallel arrays for
``tuco_write_batch``, one principal and reason for ``tuco_txn``); they are new
overloads, derived from version 7's text, so a version 7 replica still calling
the old ones keeps writing (without origins) until it is upgraded.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tuco.core.origin import Origin, new_origin

__all__ = [
    "TXN_FUNCTION_SIGNATURE",
    "WRITE_BATCH",
    "WRITE_EXPIRING_BATCH",
    "WRITE_FUNCTION_SIGNATURES",
    "WRITE_TXN",
    "migration",
    "moment",
    "stored_origin",
]

WRITE_BATCH = """SELECT first_sequence, last_sequence, committed_at, replayed, refused, refused_revisions
    FROM tuco_write_batch($1, $2, $3, $4, $5, $6, $7)"""
WRITE_EXPIRING_BATCH = """SELECT first_sequence, last_sequence, committed_at, replayed, refused, refused_revisions
    FROM tuco_write_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"""
WRITE_TXN = """SELECT n, kind, key, value, create_revision, mod_revision, version, deadline, lease
    FROM tuco_txn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"""

TXN_FUNCTION_SIGNATURE = (
    "tuco_txn(uuid, bytea[], smallint[], smallint[], bigint[], bytea[], boolean[], smallint[], bytea[], bytea[], "
    "bigint[], bigint[], integer[], text, smallint)"
)
WRITE_FUNCTION_SIGNATURES = (
    "tuco_write_batch(uuid, smallint[], bytea[], bytea[], bigint[], text[], smallint[])",
    TXN_FUNCTION_SIGNATURE,
    "tuco_write_batch(uuid, smallint[], bytea[], bytea[], bigint[], bigint[], bigint[], boolean[], text[], smallint[])",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def moment(committed_at: datetime) -> int:
    """A row's ``committed_at`` as Unix ms: what the writer and every follower show as the change's moment."""
    return (committed_at - _EPOCH) // _MS


def stored_origin(by: str | None, reason: int | None, committed_at: datetime) -> Origin | None:
    """The origin a ``tuco_events`` row records; None (unknown) for a row written without one."""
    if by is None:
        return None
    return new_origin(by, moment(committed_at), reason or 0)


def _replace(text: str, old: str, new: str, count: int = 1) -> str:
    """``text`` with ``old`` replaced ``count`` times; RuntimeError if it is not there so often (a guard on the DDL)."""
    if text.count(old) != count:  # pragma: no cover - a guard on the texts version 8 is derived from
        raise RuntimeError(f"the version 8 functions could not be derived: {old!r} found {text.count(old)} times")
    return text.replace(old, new)


_EVENT_INSERT = re.compile(
    r"INSERT INTO tuco_events \(sequence, type, key, value(?P<cols>[^)]*)\)(?P<gap>\s+)VALUES \(seq, "
)


def _plain(v7: str) -> str:
    """The batch function without deadlines, with each mutation's origin (``bys``, ``reasons``)."""
    text = _replace(
        v7,
        "expected bigint[])\nRETURNS",
        "expected bigint[],\n    bys text[], reasons smallint[])\nRETURNS",
    )
    return _replace(
        text,
        """INSERT INTO tuco_events (sequence, type, key, value)
            SELECT m.seq, m.type, m.key, m.value FROM unnest(seqs, types, keys, vals) AS m(seq, type, key, value)""",
        """INSERT INTO tuco_events (sequence, type, key, value, origin_by, origin_reason)
            SELECT m.seq, m.type, m.key, m.value, m.who, m.why
            FROM unnest(seqs, types, keys, vals, bys, reasons) AS m(seq, type, key, value, who, why)""",
    )


def _expiring(v7: str) -> str:
    """The batch function with deadlines, leases and tokens, with each mutation's origin."""
    text = _replace(
        v7,
        "expired boolean[])\nRETURNS",
        "expired boolean[],\n    bys text[], reasons smallint[])\nRETURNS",
    )
    text, count = _EVENT_INSERT.subn(
        r"INSERT INTO tuco_events (sequence, type, key, value\g<cols>, origin_by, origin_reason)\g<gap>"
        r"VALUES (seq, ",
        text,
    )
    if count != 7:  # pragma: no cover - put, delete, grant, keepalive, revoke, token create and revoke
        raise RuntimeError(f"the version 8 expiring function could not be derived ({count} inserts)")
    # Each insert's VALUES list ends its statement with ");": the origin goes before it.
    return re.sub(
        r"(INSERT INTO tuco_events \([^)]*origin_reason\)\s+VALUES \(seq, [^;]*)\);",
        r"\1, bys[i], reasons[i]);",
        text,
    )


def _txn(v7: str) -> str:
    """The transaction function, with the principal and reason of the whole transaction."""
    text = _replace(v7, "o_limits integer[])\nRETURNS", "o_limits integer[], o_by text, o_reason smallint)\nRETURNS")
    return _replace(
        text,
        """INSERT INTO tuco_events (sequence, type, key, value)
            VALUES (seq, 9, ''::bytea, (SELECT string_agg(p, ''::bytea ORDER BY k) FROM unnest(parts)
                WITH ORDINALITY AS u(p, k)));""",
        """INSERT INTO tuco_events (sequence, type, key, value, origin_by, origin_reason)
            VALUES (seq, 9, ''::bytea, (SELECT string_agg(p, ''::bytea ORDER BY k) FROM unnest(parts)
                WITH ORDINALITY AS u(p, k)), o_by, o_reason);""",
    )


def migration(plain: str, expiring: str, txn: str) -> list[str]:
    """Version 8's statements, from version 7's three write functions (their DDL texts)."""
    return [
        "SELECT 1 FROM tuco_head WHERE id = 1 FOR UPDATE",
        "ALTER TABLE tuco_events ADD COLUMN origin_by text, ADD COLUMN origin_reason smallint",
        _plain(plain),
        _expiring(expiring),
        _txn(txn),
    ]
