"""Reads of the current state straight from PostgreSQL: what read-through replicas and functions ask.

A full replica answers from memory; a read-through one (``TUCO_STATE=cache``)
and a serverless function ask ``tuco_state``, which every batch keeps current.
Each read is one statement, so in READ COMMITTED it sees one snapshot: the
row and the head it returns belong together, and the caller can tell whether
its change feed already went past that snapshot (then what it read may be
older than what it applied, and must not be cached). Expiry is judged by the
database's clock inside the statement, as the write function judges it.

A partial index over the keys with a deadline or a lease lets a read-through
replica start by reading those keys only (its expirer needs them), in time
proportional to them and not to the whole state. It is created here, once,
rather than as a schema version: a full replica neither needs nor minds it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog

from tuco.core.events import Entry
from tuco.core.store import Item, Page
from tuco.errors import HistoryCompactedError, LogClosedError, LogUnavailableError
from tuco.ports import Read

__all__ = ["EXPIRING_STATE_BY_SEQUENCE", "PostgresStateReader", "ensure_read_index"]

_logger = structlog.get_logger("tuco.log")

_NOW_MS = "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
# A long poll on a key absent now looks for its DELETE among at most this many recent events;
# older than that it cannot tell cheaply and answers with the current state (as a full replica
# does once its memory's history no longer reaches back).
LONG_POLL_SCAN_EVENTS = 100_000

_INDEX_LOCK = 0x7475_636F_0000_0002  # "tuco", 2: replicas starting together build the index once
EXPIRING_INDEX = """CREATE INDEX IF NOT EXISTS tuco_state_expiring ON tuco_state (sequence)
    WHERE deadline IS NOT NULL OR lease IS NOT NULL"""
# The same columns as the log's STATE_BY_SEQUENCE, for the keys with a deadline or a lease only.
EXPIRING_STATE_BY_SEQUENCE = """SELECT sequence, key, value, create_revision, version, deadline, lease
    FROM tuco_state WHERE deadline IS NOT NULL OR lease IS NOT NULL ORDER BY sequence"""

POINT_READ = f"""SELECT h.sequence, {_NOW_MS}, s.value, s.create_revision, s.sequence, s.version,
        s.deadline, s.lease, l.deadline
    FROM tuco_head h LEFT JOIN tuco_state s ON s.key = $1 LEFT JOIN tuco_leases l ON l.id = s.lease
    WHERE h.id = 1"""
HEAD = f"SELECT sequence, {_NOW_MS} FROM tuco_head WHERE id = 1"
# Keys in [low, high) after `after` (NULLs: unbounded), live by the database's clock $5, in key order:
# bytea compares bytewise, which for UTF-8 is code point order, the order a full replica lists in.
PAGE = """SELECT s.key, s.value, s.create_revision, s.sequence, s.version, s.deadline, s.lease, l.deadline
    FROM tuco_state s LEFT JOIN tuco_leases l ON l.id = s.lease
    WHERE s.key >= $1 AND ($2::bytea IS NULL OR s.key < $2) AND ($3::bytea IS NULL OR s.key > $3)
      AND (s.deadline IS NULL OR s.deadline > $5)
      AND (s.lease IS NULL OR coalesce(l.deadline, 0) > $5)
    ORDER BY s.key LIMIT $4"""
# Whether a key in the same range changed after revision $4: then the state at $4 is not the current one.
CHANGED_IN_RANGE = """SELECT EXISTS (SELECT 1 FROM tuco_events e
    WHERE e.sequence > $4 AND e.type IN (1, 2) AND e.key >= $1 AND ($2::bytea IS NULL OR e.key < $2)
      AND ($3::bytea IS NULL OR e.key > $3))"""
KEY_CHANGED_SINCE = f"""SELECT h.sequence, s.sequence,
        CASE WHEN s.sequence IS NULL THEN EXISTS (SELECT 1 FROM tuco_events e
            WHERE e.sequence >= greatest($2, h.sequence - {LONG_POLL_SCAN_EVENTS}) AND e.key = $1) END
    FROM tuco_head h LEFT JOIN tuco_state s ON s.key = $1 WHERE h.id = 1"""


async def ensure_read_index(conn: asyncpg.Connection) -> None:
    """Create the partial index over expiring keys if it is missing (once, whoever starts first)."""
    if await conn.fetchval("SELECT to_regclass('tuco_state_expiring') IS NOT NULL"):
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _INDEX_LOCK)
        await conn.execute(EXPIRING_INDEX)
    _logger.info("database_index_created", index="tuco_state_expiring")


class PostgresStateReader:
    """Point reads, listings and long-poll checks against ``tuco_state``, over a small pool of its own.

    Opened after the log (which creates the schema). Driver and OS errors come
    out as :class:`~tuco.errors.LogUnavailableError` (503), their text in the
    log without the URL.
    """

    def __init__(self, dsn: str | None, *, pool_size: int = 4, timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._closed = False
        self.reads = 0
        """Statements run (point reads, pages, checks): the cache's misses and what bypassed it."""

    async def open(self) -> None:
        """Open the pool and make sure the expiring-keys index exists."""
        if self._pool is not None:
            return
        if self._closed:
            raise LogClosedError("the reader is closed")
        try:
            async with asyncio.timeout(self._timeout):
                conn = await asyncpg.connect(self._dsn, server_settings={"application_name": "tuco-reads"})
                try:
                    await ensure_read_index(conn)
                finally:
                    await conn.close()
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._pool_size,
                    server_settings={"application_name": "tuco-reads"},
                )
        except _DRIVER_ERRORS as exc:
            raise _unavailable(exc, "opening the reader") from exc

    async def aclose(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(5.0):  # not wait_for: on 3.11 it could drop a cancel
                    await pool.close()
            except Exception:
                pool.terminate()

    async def read(self, key: str) -> Read:
        """The key as the database holds it now, with the head of the same snapshot."""
        row = await self._fetchrow(POINT_READ, "reading a key", key.encode())
        head, now, value = row[0], row[1], row[2]
        if value is None:
            return Read(None, 0, head)
        entry = Entry(value, row[3], row[4], row[5])
        deadline, lease, lease_deadline = row[6], row[7], row[8]
        expires_at = deadline if deadline is not None else (lease_deadline or 0) if lease is not None else 0
        if (deadline is not None or lease is not None) and expires_at <= now:
            return Read(None, 0, head)
        return Read(entry, expires_at, head)

    async def head(self) -> int:
        """The last committed revision."""
        row = await self._fetchrow(HEAD, "reading the head")
        return int(row[0])

    async def page(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        """Up to ``limit`` live keys under ``prefix`` after ``after``, now, or at ``revision`` if nothing since moved.

        A listing pinned at an older revision is served only when no key of
        the rest of its range changed after it (then the state at that revision
        is the current one); otherwise :class:`~tuco.errors.HistoryCompactedError`
        names the current head, from where the listing can start again.
        """
        low = prefix.encode()
        high = _after_prefix(low)
        start = after.encode() if after is not None else None
        pool = self._require_pool()
        try:
            async with (
                asyncio.timeout(self._timeout),
                pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                head, now = await conn.fetchrow(HEAD)
                if (
                    revision is not None
                    and revision < head
                    and await conn.fetchval(CHANGED_IN_RANGE, low, high, start, revision)
                ):
                    raise HistoryCompactedError(head)
                rows = await conn.fetch(PAGE, low, high, start, limit, now)
        except _DRIVER_ERRORS as exc:
            raise _unavailable(exc, "listing keys") from exc
        finally:
            self.reads += 1
        items = [
            Item(
                r[0].decode(),
                r[1],
                r[2],
                r[3],
                r[4],
                r[5] if r[5] is not None else (r[7] or 0) if r[6] is not None else 0,
            )
            for r in rows
        ]
        shown = head if revision is None or revision >= head else revision
        return Page(shown, items, items[-1].key if len(items) >= limit else None)

    async def changed_since(self, key: str, revision: int) -> bool:
        """Whether ``key`` was written or deleted at ``revision`` or later (True also when it cannot tell cheaply)."""
        head, mod, deleted = await self._fetchrow(KEY_CHANGED_SINCE, "checking a long poll", key.encode(), revision)
        if mod is not None:
            return bool(mod >= revision)
        return bool(deleted) or revision < head - LONG_POLL_SCAN_EVENTS

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise LogClosedError("the reader is not open")
        return self._pool

    async def _fetchrow(self, statement: str, doing: str, *args: Any) -> Any:
        pool = self._require_pool()
        self.reads += 1
        try:
            async with asyncio.timeout(self._timeout), pool.acquire() as conn:
                return await conn.fetchrow(statement, *args)
        except _DRIVER_ERRORS as exc:
            raise _unavailable(exc, doing) from exc


def _after_prefix(prefix: bytes) -> bytes | None:
    """The least byte string above every string starting with ``prefix`` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)


def _unavailable(exc: BaseException, doing: str) -> LogUnavailableError:
    """The error a client sees for a failed read (503); the driver's kind and SQLSTATE go to the log, no text."""
    state = getattr(exc, "sqlstate", None)
    _logger.warning("database_read_failed", doing=doing, error=type(exc).__name__, sqlstate=state)
    return LogUnavailableError(f"the database is out of reach ({doing}); the cause is in tuco's log")
