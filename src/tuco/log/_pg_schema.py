"""The PostgreSQL log's tables and statements, and how asyncpg's errors are sorted.

Kept apart from :mod:`tuco.log.postgres` so the SQL can be read in one place.
"""

from __future__ import annotations

import asyncpg

from tuco.errors import LogFormatError

__all__ = [
    "CHANNEL",
    "EVENTS_AFTER",
    "PRUNE_BATCHES",
    "READ_HEAD",
    "SCHEMA_VERSION",
    "STATE_BY_SEQUENCE",
    "WRITE_BATCH",
    "ensure_schema",
    "is_transient",
    "refusal",
]

SCHEMA_VERSION = 2
CHANNEL = "tuco_events"

# Taken in the creating transaction so replicas starting together do not race on
# CREATE TABLE IF NOT EXISTS (which can fail with a unique violation on pg_type).
_SCHEMA_LOCK = 0x7475_636F_0000_0001  # "tuco", 1

# Version 1: the tables. Frozen: a database at version 1 has exactly these.
_V1 = [
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
]

# Version 2: the whole write of a batch is one server-side step, so the head row
# lock is taken and released inside one statement and never held while the
# client is away (a frozen or partitioned replica used to stall every other).
#
# tuco_write_batch is THE place where a batch is decided and recorded; keep it
# that way. Its steps, in order:
#   1. lock   take the tuco_head row lock: it orders writers across replicas, so
#             sequence N+1 never commits before N (no gap a follower could skip);
#   2. dedupe look the batch id up (after the lock, so a retry waits for the commit
#             of an earlier attempt still in flight): found means it committed,
#             and its range is returned with replayed = true, nothing written;
#   3. decide nothing to decide yet: every PUT and DELETE is accepted. Per-key
#             revisions and compare-and-swap belong here, reading tuco_state
#             under the lock and returning a verdict per mutation;
#   4. record number the events head+1..., insert them, apply the last mutation
#             of each key to tuco_state, move the head, remember the batch id,
#             NOTIFY (delivered on commit);
#   5. return (first_sequence, last_sequence, committed_at, replayed).
# Inputs are parallel arrays in the batch's order (type 1 PUT, 2 DELETE).
_WRITE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tuco_write_batch(batch_id uuid, types smallint[], keys bytea[], vals bytea[])
RETURNS TABLE (first_sequence bigint, last_sequence bigint, committed_at timestamptz, replayed boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    head bigint;
    total integer := cardinality(types);
BEGIN
    -- 1. lock
    SELECT h.sequence INTO head FROM tuco_head h WHERE h.id = 1 FOR UPDATE;
    -- 2. dedupe (a new snapshot: READ COMMITTED statements see what committed while we waited)
    RETURN QUERY SELECT b.first_sequence, b.last_sequence, b.committed_at, true
        FROM tuco_batches b WHERE b.id = batch_id;
    IF FOUND THEN
        RETURN;
    END IF;
    -- 3. decide: nothing yet
    -- 4. record
    INSERT INTO tuco_events (sequence, type, key, value)
        SELECT head + m.n, m.type, m.key, m.value
        FROM unnest(types, keys, vals) WITH ORDINALITY AS m(type, key, value, n);
    INSERT INTO tuco_state AS s (key, value, sequence)
        SELECT l.key, l.value, l.sequence FROM (
            SELECT DISTINCT ON (m.key) m.key, m.value, m.type, head + m.n AS sequence
            FROM unnest(types, keys, vals) WITH ORDINALITY AS m(type, key, value, n)
            ORDER BY m.key, m.n DESC) l
        WHERE l.type = 1
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, sequence = excluded.sequence;
    DELETE FROM tuco_state s USING (
            SELECT DISTINCT ON (m.key) m.key, m.type
            FROM unnest(types, keys) WITH ORDINALITY AS m(type, key, n)
            ORDER BY m.key, m.n DESC) l
        WHERE l.type = 2 AND s.key = l.key;
    UPDATE tuco_head SET sequence = head + total WHERE id = 1;
    INSERT INTO tuco_batches (id, first_sequence, last_sequence) VALUES (batch_id, head + 1, head + total);
    PERFORM pg_notify('{CHANNEL}', (head + total)::text);
    -- 5. return
    RETURN QUERY SELECT head + 1, head + total, now(), false;
END
$fn$"""

# Each step brings a database from the version before to its own; run in order.
_MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: [_WRITE_FUNCTION]}

# One round trip writes a whole batch; see _WRITE_FUNCTION. Runs outside any
# explicit transaction, so it commits before the reply is sent.
WRITE_BATCH = "SELECT first_sequence, last_sequence, committed_at, replayed FROM tuco_write_batch($1, $2, $3, $4)"
READ_HEAD = """SELECT h.sequence, e.committed_at
    FROM tuco_head h LEFT JOIN tuco_events e ON e.sequence = h.sequence WHERE h.id = 1"""
EVENTS_AFTER = """SELECT sequence, type, key, value, committed_at FROM tuco_events
    WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3"""
STATE_BY_SEQUENCE = "SELECT sequence, key, value FROM tuco_state ORDER BY sequence"
PRUNE_BATCHES = "DELETE FROM tuco_batches WHERE committed_at < now() - interval '1 hour'"


async def ensure_schema(conn: asyncpg.Connection) -> int:
    """Create or migrate the schema to :data:`SCHEMA_VERSION` (safe when replicas start together).

    Returns the version found before (0 for an empty database). Refuses a newer
    schema with :class:`~tuco.errors.LogFormatError`. Replicas of the previous
    version keep working during a rolling upgrade: version 2 only adds the
    write function, and both kinds of writer order themselves on the head row.
    """
    if await conn.fetchval("SELECT to_regclass('tuco_schema') IS NOT NULL"):
        version = await conn.fetchval("SELECT max(version) FROM tuco_schema")
        if version == SCHEMA_VERSION:
            return SCHEMA_VERSION
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        # Not to_regclass: its cached answer can predate a creation committed while we waited.
        await conn.execute(_V1[0])
        found = await conn.fetchval("SELECT coalesce(max(version), 0) FROM tuco_schema")
        if found > SCHEMA_VERSION:
            raise LogFormatError(
                f"the database holds tuco schema version {found}; this build reads version {SCHEMA_VERSION}"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO tuco_schema (version) VALUES ($1)", version)
    return int(found)


# SQLSTATE classes worth retrying: connection exceptions, transaction rollback
# (serialization failure, deadlock), insufficient resources (too many
# connections), operator intervention (shutdown, cancel), idle-in-transaction timeout.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})
_TRANSIENT_STATES = frozenset({"25P03", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later (on a new connection) may succeed."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, (asyncpg.DataError, asyncpg.ClientConfigurationError)):
        return False
    return isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError))


def refusal(exc: BaseException) -> str | None:
    """In tuco's words, why the server will never accept this configuration; None if waiting may help.

    A database that does not exist or a login the server refuses is a mistake to
    report at once, not an outage to ride out.
    """
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return "the connection settings are invalid"
    state = ""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
    if state == "3D000":
        return "it does not exist"
    if state.startswith("28"):
        return "the server refused the login (authentication)"
    if state == "42501":
        return "the user lacks a privilege tuco needs (permission denied)"
    return None
