"""The PostgreSQL log's statements, and the schema's creation, migration and checks.

Kept apart from :mod:`tuco.log.postgres` so the SQL can be read in one place; the
migrations' DDL is in :mod:`tuco.log._pg_migrations`, and how asyncpg's errors are
sorted in :mod:`tuco.log._pg_errors` (re-exported here).
"""

from __future__ import annotations

import asyncpg

from tuco.errors import LogFormatError
from tuco.log._pg_errors import is_permission_denied, is_transient, refusal
from tuco.log._pg_migrations import CHANNEL, MIGRATIONS
from tuco.log._pg_origins import WRITE_BATCH, WRITE_EXPIRING_BATCH, WRITE_FUNCTION_SIGNATURES

__all__ = [
    "BOOTSTRAP_HEAD",
    "CHANNEL",
    "EVENTS_AFTER",
    "LIVE_LEASES",
    "LIVE_TOKENS",
    "PRUNE_BATCHES",
    "READ_HEAD",
    "SCHEMA_VERSION",
    "STATE_BY_SEQUENCE",
    "WRITE_BATCH",
    "WRITE_EXPIRING_BATCH",
    "ensure_schema",
    "is_permission_denied",
    "is_transient",
    "missing_privileges",
    "refusal",
]

SCHEMA_VERSION = 8

# Taken in the creating transaction so replicas starting together do not race on
# CREATE TABLE IF NOT EXISTS (which can fail with a unique violation on pg_type).
_SCHEMA_LOCK = 0x7475_636F_0000_0001  # "tuco", 1


# One round trip writes a whole batch (WRITE_BATCH, WRITE_EXPIRING_BATCH: see _V3_WRITE_FUNCTION, and
# version 8's origins). Runs outside any explicit transaction, so it commits before the reply is sent.
# The database's clock (Unix ms) comes with every head read: how a replica keeps its estimate of it.
READ_HEAD = """SELECT h.sequence, e.committed_at, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM tuco_head h LEFT JOIN tuco_events e ON e.sequence = h.sequence WHERE h.id = 1"""
EVENTS_AFTER = """SELECT sequence, type, key, value, committed_at, deadline, lease, ttl, origin_by, origin_reason
    FROM tuco_events
    WHERE sequence > $1 AND sequence <= $2 ORDER BY sequence LIMIT $3"""
BOOTSTRAP_HEAD = """SELECT h.sequence, e.committed_at, e.type, e.key, e.deadline, e.lease, e.ttl,
        floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM tuco_head h LEFT JOIN tuco_events e ON e.sequence = h.sequence WHERE h.id = 1"""
STATE_BY_SEQUENCE = """SELECT sequence, key, value, create_revision, version, deadline, lease
    FROM tuco_state ORDER BY sequence"""
LIVE_LEASES = "SELECT id, ttl, deadline, coalesce(owner, ''::bytea) FROM tuco_leases ORDER BY id"
LIVE_TOKENS = "SELECT sequence, id, record FROM tuco_tokens ORDER BY sequence"
PRUNE_BATCHES = "DELETE FROM tuco_batches WHERE committed_at < now() - interval '1 hour'"


async def ensure_schema(conn: asyncpg.Connection) -> int:
    """Create or migrate the schema to :data:`SCHEMA_VERSION` (safe when replicas start together).

    Returns the version found before (0 for an empty database). The migration is
    one transaction: it completes, or the database is left as it was. Refuses a
    newer schema, and a relation tuco would create that another program already
    has, with :class:`~tuco.errors.LogFormatError` naming it. Replicas of version 2 keep
    writing during a rolling upgrade (their call of the write function is kept,
    and goes through the new one); version 1 replicas' writes are refused by the
    database once version 3 is installed, as they would leave revisions stale.
    """
    if await conn.fetchval("SELECT to_regclass('tuco_schema') IS NOT NULL"):
        try:
            version = await conn.fetchval("SELECT max(version) FROM tuco_schema")
        except asyncpg.UndefinedColumnError:  # not tuco's table: the transaction below says whose
            version = None
        if version == SCHEMA_VERSION:
            return SCHEMA_VERSION
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        # The catalog, not to_regclass: its cached answer can predate a creation committed while we waited.
        found = await _installed_version(conn)
        if found > SCHEMA_VERSION:
            raise LogFormatError(
                f"the database holds tuco schema version {found}; this build reads version {SCHEMA_VERSION}"
            )
        await _refuse_foreign_relations(conn, found)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO tuco_schema (version) VALUES ($1)", version)
    return int(found)


# The relations each version creates (a table's primary key index is one too). CREATE TABLE IF NOT
# EXISTS would take another program's table of the same name for tuco's and record the version
# over it; they are looked for first, in the schema tuco creates its tables in.
_CREATES: dict[int, tuple[str, ...]] = {
    1: (
        "tuco_schema",
        "tuco_schema_pkey",
        "tuco_events",
        "tuco_events_pkey",
        "tuco_state",
        "tuco_state_pkey",
        "tuco_state_sequence",
        "tuco_head",
        "tuco_head_pkey",
        "tuco_batches",
        "tuco_batches_pkey",
    ),
    4: ("tuco_leases", "tuco_leases_pkey"),
    5: ("tuco_tokens", "tuco_tokens_pkey"),
}
_RELATION_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "i": "index", "S": "sequence"}
_FOUND_RELATIONS = """SELECT c.relname, c.relkind::text FROM pg_class c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1::text[]) ORDER BY c.relname"""
_SCHEMA_TABLE = """SELECT c.relkind::text, (SELECT count(*) FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = 'version' AND a.atttypid = 'integer'::regtype AND NOT a.attisdropped)
    FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = 'tuco_schema'"""


async def _installed_version(conn: asyncpg.Connection) -> int:
    """The schema version recorded (0: no tuco_schema); LogFormatError if tuco_schema is another program's."""
    row = await conn.fetchrow(_SCHEMA_TABLE)
    if row is None:
        return 0
    if row[0] not in ("r", "p") or not row[1]:
        raise _foreign("tuco_schema", str(row[0]))
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM tuco_schema"))


async def _refuse_foreign_relations(conn: asyncpg.Connection, found: int) -> None:
    """Raise LogFormatError naming the first relation the versions after ``found`` would create that exists."""
    names = [name for version, created in _CREATES.items() if version > found for name in created]
    rows = await conn.fetch(_FOUND_RELATIONS, names)
    if rows:
        raise _foreign(str(rows[0][0]), str(rows[0][1]))


def _foreign(name: str, kind: str) -> LogFormatError:
    what = _RELATION_KINDS.get(kind, "relation")
    return LogFormatError(
        f"the database already has a {what} {name} that tuco did not create (another program's?); "
        "nothing was changed: give tuco a database or schema of its own"
    )


# What writing takes beyond reading: the write functions run with the caller's privileges
# (SECURITY INVOKER), so a role that may only SELECT reads the log and cannot write it.
WRITE_PRIVILEGES: tuple[tuple[str, str], ...] = (
    ("tuco_batches", "DELETE"),  # pruning old batch ids
    ("tuco_batches", "INSERT"),
    ("tuco_events", "INSERT"),
    ("tuco_head", "UPDATE"),  # also what its row lock (FOR UPDATE) needs
    ("tuco_leases", "DELETE"),
    ("tuco_leases", "INSERT"),
    ("tuco_leases", "UPDATE"),
    ("tuco_state", "DELETE"),
    ("tuco_state", "INSERT"),
    ("tuco_state", "UPDATE"),
    ("tuco_tokens", "DELETE"),
    ("tuco_tokens", "INSERT"),
)
_WRITE_FUNCTIONS = WRITE_FUNCTION_SIGNATURES
_MISSING_PRIVILEGES = """SELECT m.name FROM (
        SELECT 1 AS part, w.n, w.what || ' on ' || w.name AS name, has_table_privilege(w.name, w.what) AS held
        FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w(name, what, n)
        UNION ALL
        SELECT 2, f.n, 'EXECUTE on ' || f.name, has_function_privilege(f.name, 'EXECUTE')
        FROM unnest($3::text[]) WITH ORDINALITY AS f(name, n)) m
    WHERE NOT m.held ORDER BY m.part, m.n"""


async def missing_privileges(conn: asyncpg.Connection) -> tuple[str, ...]:
    """The privileges writing needs that the connected role lacks ("INSERT on tuco_events"...), in a fixed order."""
    rows = await conn.fetch(
        _MISSING_PRIVILEGES,
        [name for name, _ in WRITE_PRIVILEGES],
        [what for _, what in WRITE_PRIVILEGES],
        list(_WRITE_FUNCTIONS),
    )
    return tuple(str(row[0]) for row in rows)
