"""The PostgreSQL transaction log: many replicas, one ordered history.

Sequencing. Every batch is one transaction that first takes the row lock on
``tuco_head`` (``SELECT ... FOR UPDATE``). That lock serializes writers across
all replicas: the holder reads the last sequence S, numbers its events S+1...,
inserts them into ``tuco_events``, applies them to ``tuco_state`` (the current
value per key), moves the head and sends ``NOTIFY tuco_events`` (delivered on
commit), all in that one transaction. Sequence N+1 cannot be assigned before N
committed, so no reader can see N+1 without N: the history has no gaps to step
past (a BIGSERIAL would allow them). The follower still stops at a gap if it
ever saw one. Before writing, a batch hands every event up to S that this
replica has not applied yet to ``apply``, so its own events never overtake
another replica's in the local store.

Exactly once across a lost connection. Each batch carries a random id,
recorded in ``tuco_batches`` in the same transaction. If the connection breaks
before COMMIT was sent the transaction is gone and the batch is simply retried.
If it breaks during or after COMMIT the outcome is unknown, so every retry first
takes the head lock (which waits for the old backend if it is still committing)
and then looks the batch id up: found means it committed, and its events are
read back with their sequences; absent means it did not, and it is written.
If the database stays out of reach for ``write_timeout`` the batch's writers get
:class:`~tuco.errors.LogUnavailableError` (503): never acknowledged, possibly
stored, and the log keeps taking writes for when the database returns. Batch
ids older than an hour are pruned; retries happen within seconds.

Bootstrap costs time in proportion to the live data, not the history: in one
REPEATABLE READ snapshot it reads the head S and streams ``tuco_state`` in
sequence order as PUT events (each the latest for its key, all at or below S).
The follower then takes over from S, on NOTIFY or every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import structlog

from tuco.core.events import Event, EventType
from tuco.errors import LogClosedError, LogError, LogFailedError, LogUnavailableError
from tuco.log import _pg_schema as sql
from tuco.log.batching import GroupCommit, Mutation
from tuco.log.redact import redact_dsn
from tuco.ports import ApplyEvent

__all__ = ["PostgresTransactionLog", "redact_dsn"]

_logger = structlog.get_logger("tuco.log")
_CHUNK = 10_000
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
_LAG_LOG_EVERY = 10.0
_PRUNE_EVERY = 1000
# A backend left idle inside a transaction (our process hung or partitioned
# away) would hold the head lock and stall every replica's writes.
_SERVER_SETTINGS = {"application_name": "tuco", "idle_in_transaction_session_timeout": "30000"}


class PostgresTransactionLog:
    """The :class:`~tuco.ports.TransactionLog` kept in PostgreSQL and shared by replicas.

    ``dsn=None`` uses the libpq ``PG*`` variables. ``connect_timeout`` bounds
    start-up; ``write_timeout`` bounds how long a batch keeps retrying a lost
    database before its writers get :class:`~tuco.errors.LogUnavailableError`.
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        poll_interval: float = 0.5,
        use_notify: bool = True,
        connect_timeout: float = 30.0,
        max_pending_bytes: int = 64 << 20,
        pool_size: int = 4,
        write_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._poll_interval = poll_interval
        self._use_notify = use_notify
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._write_timeout = write_timeout
        self._secret = _password_of(dsn)
        self.database = _describe_target(dsn)
        self._commits = GroupCommit(self._commit, max_pending_bytes=max_pending_bytes)
        self._pool: asyncpg.Pool | None = None
        self._apply: ApplyEvent | None = None
        self._follower: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unavailable: LogUnavailableError | None = None
        self._closed = False
        self._applied = 0
        self._applied_at: datetime | None = None
        self._head = 0
        self._head_at: datetime | None = None
        self._last_lag_log = 0.0

    @property
    def failure(self) -> LogError | None:
        """Non-``None`` while the database is out of reach (readiness false), or after a fatal error."""
        return self._commits.failure or self._unavailable

    @property
    def last_sequence(self) -> int:
        """The last sequence handed to ``apply`` (or read by bootstrap)."""
        return self._applied

    async def open(self) -> None:
        """Reach the database and make sure the schema is there."""
        await self._open()

    async def read_events(self) -> AsyncIterator[Sequence[Event]]:
        """Yield the current state as PUT events in sequence order: one per live key, not the history."""
        pool = await self._open()
        try:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                row = await conn.fetchrow(sql.READ_HEAD)
                head, head_at = row[0], row[1]
                cursor = await conn.cursor(sql.STATE_BY_SEQUENCE)
                while rows := await cursor.fetch(_CHUNK):
                    yield [Event(r[0], EventType.PUT, r[1].decode(), r[2]) for r in rows]
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise LogUnavailableError(f"cannot read the state from the database: {self._say(exc)}") from exc
        self._applied = self._head = head
        self._applied_at = self._head_at = head_at

    async def run(self, apply: ApplyEvent) -> None:
        """Start the group commit and the follower of other replicas' writes."""
        await self._open()
        self._apply = apply
        self._commits.start(self._apply_own)
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="tuco-pg-follower")

    def write_put(self, key: str, value: bytes) -> Awaitable[Event]:
        return self._commits.submit(EventType.PUT, key, value)

    def write_delete(self, key: str) -> Awaitable[Event]:
        return self._commits.submit(EventType.DELETE, key)

    async def catch_up(self) -> None:
        """Apply everything committed anywhere up to the current head; raise if the database is out of reach."""
        if self._closed or self._pool is None or self._apply is None:
            raise LogClosedError("the log is not running")
        try:
            async with asyncio.timeout(self._write_timeout), self._pool.acquire() as conn:
                row = await conn.fetchrow(sql.READ_HEAD)
                self._see_head(row[0], row[1])
                await self._fill(conn, row[0])
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise self._mark_unavailable(exc, "catch_up") from exc
        self._mark_available()

    def describe(self) -> Mapping[str, object]:
        lag_events = max(0, self._head - self._applied)
        lag_seconds = 0.0
        if lag_events and self._head_at is not None and self._applied_at is not None:
            lag_seconds = max(0.0, (self._head_at - self._applied_at).total_seconds())
        return {
            "backend": "postgres",
            "last_sequence": self._applied,
            "lag_events": lag_events,
            "lag_seconds": round(lag_seconds, 3),
            "connected": self._pool is not None and not self._closed and self._unavailable is None,
            "database": self.database,
        }

    async def aclose(self) -> None:
        """Commit what is pending, stop the follower, close every connection."""
        if self._closed:
            return
        await self._commits.aclose()
        self._closed = True
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=5.0)
            except Exception:
                pool.terminate()
            except asyncio.CancelledError:
                pool.terminate()
                raise

    # -- connecting -------------------------------------------------------

    async def _connect(self, timeout: float) -> asyncpg.Connection:
        return await asyncpg.connect(self._dsn, timeout=max(timeout, 0.1), server_settings=_SERVER_SETTINGS)

    async def _open(self) -> asyncpg.Pool:
        """Reach the database (retrying with backoff up to ``connect_timeout``), create the schema, open the pool."""
        if self._closed:
            raise LogClosedError("the log is closed")
        if self._pool is not None:
            return self._pool
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        delay = _BACKOFF_FIRST
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.1)):
                    conn = await self._connect(deadline - loop.time())
                    try:
                        await sql.ensure_schema(conn)
                    finally:
                        await _close_quietly(conn)
                break
            except Exception as exc:
                if not _is_driver_error(exc):
                    raise
                message = self._say(exc)
                remaining = deadline - loop.time()
                _logger.warning("database_unreachable", attempt=attempt, error=message, database=self.database)
                if not sql.is_transient(exc) or remaining <= 0:
                    raise LogFailedError(
                        f"cannot use the database {self.database} (gave up after {attempt} attempts): {message}"
                    ) from exc
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, _BACKOFF_CAP)
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=0, max_size=self._pool_size, server_settings=_SERVER_SETTINGS
        )
        return self._pool

    # -- writing ----------------------------------------------------------

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Event]:
        pool = self._pool
        if pool is None:
            raise LogClosedError("the log is not open")
        loop = asyncio.get_running_loop()
        # While the database is known to be away, answer quickly rather than hold writers.
        budget = self._write_timeout if self._unavailable is None else min(self._write_timeout, 1.0)
        deadline = loop.time() + budget
        batch_id = uuid.uuid4()
        delay = _BACKOFF_FIRST
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.1)), pool.acquire() as conn:
                    events = await self._commit_once(conn, batch, batch_id, recheck=attempt > 1)
            except Exception as exc:
                if not _is_driver_error(exc):
                    raise
                remaining = deadline - loop.time()
                if not sql.is_transient(exc) or remaining <= delay:
                    raise self._mark_unavailable(exc, "write", attempts=attempt) from exc
                _logger.info("commit_retry", attempt=attempt, error=self._say(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_CAP)
                continue
            self._mark_available()
            return events

    async def _commit_once(
        self, conn: asyncpg.Connection, batch: Sequence[Mutation], batch_id: uuid.UUID, *, recheck: bool
    ) -> list[Event]:
        # READ COMMITTED: once the lock is ours, each later statement sees every commit before it.
        async with conn.transaction(isolation="read_committed"):
            head, now = await conn.fetchrow(sql.LOCK_HEAD)
            # Everything up to the head is committed and must reach apply before our events.
            await self._fill(conn, head)
            if recheck and (done := await conn.fetchrow(sql.FIND_BATCH, batch_id)) is not None:
                rows = await conn.fetch(sql.EVENTS_AFTER, done[0] - 1, done[1], len(batch))
                return [_event(r) for r in rows]
            first = head + 1
            events = [Event(first + i, m.type, m.key, m.value) for i, m in enumerate(batch)]
            await conn.execute(sql.WRITE_BATCH, *_batch_arguments(events), batch_id, first)
            if self._commits.batches % _PRUNE_EVERY == _PRUNE_EVERY - 1:
                await conn.execute(sql.PRUNE_BATCHES)
        self._see_head(events[-1].sequence, now)
        return events

    def _apply_own(self, event: Event) -> None:
        """GroupCommit's apply: skip our events the follower already delivered."""
        if event.sequence == self._applied + 1 and self._apply is not None:
            self._apply(event)
            self._applied = event.sequence
            self._applied_at = self._head_at

    # -- following --------------------------------------------------------

    async def _follow(self) -> None:
        """Apply other replicas' commits forever, reconnecting with backoff after any failure."""
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_FIRST
        attempt = 0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect(min(self._connect_timeout, 10.0))
                if self._use_notify:
                    await conn.add_listener(sql.CHANNEL, self._on_notify)
                conn.add_termination_listener(self._on_terminated)
                delay, attempt = _BACKOFF_FIRST, 0
                while not conn.is_closed():
                    self._wake.clear()
                    async with asyncio.timeout(max(30.0, 4 * self._poll_interval)):
                        row = await conn.fetchrow(sql.READ_HEAD)
                        self._see_head(row[0], row[1])
                        await self._fill(conn, row[0])
                    self._mark_available()
                    self._log_lag(loop.time())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except Exception as exc:  # never let the follower die: log, back off, reconnect
                attempt += 1
                self._mark_unavailable(exc, "follow", attempts=attempt)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_CAP)
            finally:
                if conn is not None:
                    await _close_quietly(conn)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        with contextlib.suppress(ValueError, TypeError):
            self._head = max(self._head, int(str(payload)))
        self._wake.set()

    def _on_terminated(self, conn: object) -> None:
        self._wake.set()

    async def _fill(self, conn: asyncpg.Connection, upto: int) -> None:
        """Apply the committed events after the last applied one, up to ``upto``, in chunks."""
        while self._applied < upto:
            rows = await conn.fetch(sql.EVENTS_AFTER, self._applied, upto, _CHUNK)
            if not self._deliver(rows) or len(rows) < _CHUNK:
                return

    def _deliver(self, rows: Iterable[Any]) -> bool:
        """Apply rows in order, skipping what was applied; stop (return False) at a gap."""
        apply = self._apply
        for row in rows:
            sequence = row[0]
            if sequence <= self._applied:
                continue
            if sequence != self._applied + 1:
                _logger.warning("sequence_gap", expected=self._applied + 1, found=sequence)
                return False
            if apply is not None:
                apply(_event(row))
            self._applied = sequence
            self._applied_at = row[4]
        return True

    # -- health -----------------------------------------------------------

    def _see_head(self, sequence: int, at: datetime | None) -> None:
        if sequence >= self._head:
            self._head = sequence
            self._head_at = at

    def _log_lag(self, now: float) -> None:
        status = self.describe()
        if status["lag_events"] and now - self._last_lag_log >= _LAG_LOG_EVERY:
            self._last_lag_log = now
            _logger.info("replication_lag", events=status["lag_events"], seconds=status["lag_seconds"])

    def _mark_unavailable(self, exc: BaseException, doing: str, *, attempts: int = 1) -> LogUnavailableError:
        message = self._say(exc)
        error = LogUnavailableError(f"database unavailable ({doing}): {message}")
        if self._unavailable is None or attempts <= 1 or attempts % 10 == 0:
            name = "database_unreachable" if sql.is_transient(exc) else "database_error"
            _logger.warning(name, doing=doing, attempt=attempts, error=message)
        self._unavailable = error
        return error

    def _mark_available(self) -> None:
        if self._unavailable is not None:
            self._unavailable = None
            _logger.info("database_reachable", database=self.database)

    def _say(self, exc: BaseException) -> str:
        """A one-line description of a driver error, with any password blanked out."""
        text = f"{type(exc).__name__}: {exc}".strip().removesuffix(":")
        if self._secret:
            text = text.replace(self._secret, "***")
        return " ".join(text.split())


def _event(row: Any) -> Event:
    return Event(row[0], EventType(row[1]), row[2].decode(), row[3])


def _batch_arguments(events: Sequence[Event]) -> tuple[Any, ...]:
    """Columns for WRITE_BATCH; the state part keeps only the last mutation of each key."""
    keys = [event.key.encode() for event in events]
    last: dict[bytes, Event] = dict(zip(keys, events, strict=True))
    puts = [(key, event) for key, event in last.items() if event.type is EventType.PUT]
    return (
        [event.sequence for event in events],
        [int(event.type) for event in events],
        keys,
        [event.value for event in events],
        [key for key, _ in puts],
        [event.value for _, event in puts],
        [event.sequence for _, event in puts],
        [key for key, event in last.items() if event.type is EventType.DELETE],
        events[-1].sequence,
    )


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(
        exc, (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)
    )


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=2.0)
    except Exception:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise


def _password_of(dsn: str | None) -> str | None:
    if dsn is None:
        return os.environ.get("PGPASSWORD") or None
    with contextlib.suppress(ValueError):
        password = urlsplit(dsn).password
        return unquote(password) if password else None
    return None


def _describe_target(dsn: str | None) -> str:
    if dsn is not None:
        try:
            return redact_dsn(dsn)
        except ValueError:
            return "(unparseable database URL)"
    env = os.environ
    user = env.get("PGUSER", "")
    return (
        f"postgresql://{user}{'@' if user else ''}{env.get('PGHOST', 'localhost')}:{env.get('PGPORT', '5432')}"
        f"/{env.get('PGDATABASE', user)} (from PG* variables)"
    )
