"""The PostgreSQL log's tables and statements, and how asyncpg's errors are sorted.

Kept apart from :mod:`tuco.log.postgres` so the SQL can be read in one place.
"""

from __future__ import annotations

import asyncpg

from tuco.errors import LogFormatError

__all__ = [
    "CHANNEL",
    "EVENTS_AFTER",
    "FIND_BATCH",
    "LOCK_HEAD",
    "PRUNE_BATCHES",
    "READ_HEAD",
    "SCHEMA_VERSION",
    "STATE_BY_SEQUENCE",
    "WRITE_BATCH",
    "ensure_schema",
    "is_transient",
]

SCHEMA_VERSION = 1
CHANNEL = "tuco_events"

# Taken in the creating transaction so replicas starting together do not race on
# CREATE TABLE IF NOT EXISTS (which can fail with a unique violation on pg_type).
_SCHEMA_LOCK = 0x7475_636F_0000_0001  # "tuco", 1

_CREATE = [
    """CREATE TABLE IF NOT EXISTS tuco_schema (
        version integer PRIMARY KEY,
        installed_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS tuco_events (
        sequence bigint PRIMARY KEY,
        type smallint NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS tuco_state (
        key bytea PRIMARY KEY,
        value bytea NOT NULL,
        sequence bigint NOT NULL)""",
    # Bootstrap streams the state in sequence order; the index spares it a sort.
    "CREATE INDEX IF NOT EXISTS tuco_state_sequence ON tuco_state (sequence)",
    """CREATE TABLE IF NOT EXISTS tuco_head (
        id integer PRIMARY KEY CHECK (id = 1),
        sequence bigint NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tuco_batches (
        id uuid PRIMARY KEY,
        first_sequence bigint NOT NULL,
        last_sequence bigint NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT now())""",
    "INSERT INTO tuco_head (id, sequence) VALUES (1, 0) ON CONFLICT DO NOTHING",
    f"INSERT INTO tuco_schema (version) VALUES ({SCHEMA_VERSION}) ON CONFLICT DO NOTHING",
]

LOCK_HEAD = "SELECT sequence, now() FROM tuco_head WHERE id = 1 FOR UPDATE"
READ_HEAD = """SELECT h.sequence, e.committed_at
    FROM tuco_head h LEFT JOIN tuco_events e ON e.sequence = h.sequence WHERE h.id = 1"""
FIND_BATCH = "SELECT first_sequence, last_sequence FROM tuco_batches WHERE id = $1"
EVENTS_AFTER = """SELECT sequence, type, key, value, committed_at FROM tuco_events
    WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3"""
STATE_BY_SEQUENCE = "SELECT sequence, key, value FROM tuco_state ORDER BY sequence"
PRUNE_BATCHES = "DELETE FROM tuco_batches WHERE committed_at < now() - interval '1 hour'"

# One round trip writes the whole batch: events, state (already collapsed to the
# last mutation per key, so no key appears twice), head, batch id, notification.
WRITE_BATCH = f"""
WITH events AS (
    INSERT INTO tuco_events (sequence, type, key, value)
    SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bytea[], $4::bytea[])
), puts AS (
    INSERT INTO tuco_state (key, value, sequence)
    SELECT * FROM unnest($5::bytea[], $6::bytea[], $7::bigint[])
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, sequence = excluded.sequence
), deletes AS (
    DELETE FROM tuco_state WHERE key = ANY($8::bytea[])
), head AS (
    UPDATE tuco_head SET sequence = $9::bigint WHERE id = 1
), batch AS (
    INSERT INTO tuco_batches (id, first_sequence, last_sequence) VALUES ($10::uuid, $11::bigint, $9::bigint)
)
SELECT pg_notify('{CHANNEL}', $9::bigint::text)
"""


async def ensure_schema(conn: asyncpg.Connection) -> None:
    """Create the tables if missing (safe when replicas start together); refuse a newer schema."""
    if await conn.fetchval("SELECT to_regclass('tuco_schema') IS NOT NULL"):
        version = await conn.fetchval("SELECT max(version) FROM tuco_schema")
        if version == SCHEMA_VERSION:
            return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        for statement in _CREATE:
            await conn.execute(statement)
        version = await conn.fetchval("SELECT max(version) FROM tuco_schema")
    if version != SCHEMA_VERSION:
        raise LogFormatError(
            f"the database holds tuco schema version {version}; this build reads version {SCHEMA_VERSION}"
        )


# SQLSTATE classes worth retrying: connection exceptions, transaction rollback
# (serialization failure, deadlock), insufficient resources (too many
# connections), operator intervention (shutdown, cancel), idle-in-transaction timeout.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})
_TRANSIENT_STATES = frozenset({"25P03", "55P03", "3D000"})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later (on a new connection) may succeed."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, asyncpg.DataError):
        return False
    return isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError))
