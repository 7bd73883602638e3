"""What the PostgreSQL log's writer and follower share: the connection, the replica's position, its health.

:class:`PostgresReplica` holds a replica's state (the sequence applied, the head
seen, the estimate of the database's clock, whether the database is reachable and
the role may write) and reaches the database; :mod:`tuco.log._pg_follower` follows
other replicas' writes on top of it and :mod:`tuco.log.postgres` writes batches.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from tuco.core.events import Event
from tuco.errors import (
    ConfigurationError,
    LogClosedError,
    LogError,
    LogFailedError,
    LogReadOnlyError,
    LogUnavailableError,
)
from tuco.log import _pg_failover as ha
from tuco.log import _pg_reads
from tuco.log import _pg_schema as sql
from tuco.log._pg_errors import (
    describe_error,
    is_driver_error,
    is_not_primary,
    is_transient,
    refusal,
    secrets_of,
)
from tuco.log.batching import GroupCommit, Mutation, Outcome
from tuco.log.redact import check_database_url, redact_dsn

__all__ = ["PostgresReplica"]

_logger = structlog.get_logger("tuco.log")
_CHUNK = 10_000
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
# Waiting writes and the follower retry at least this often: after a failover the new primary is found within
# about this long (plus a connection and a commit), and trying a refused or fast-failing host list is cheap.
_RETRY_CAP = 0.5
_LAG_LOG_EVERY = 10.0
_CLOCK_READINGS = 8  # bounds of the database's clock kept (one per head read); the tightest is used
_PRIVILEGE_RECHECK = 2.0  # seconds between the follower's looks at a role's privileges while it cannot write
# Writes hold no transaction open across round trips; bootstrap's snapshot does,
# and a hung replica should not pin old row versions forever. READ COMMITTED is
# what tuco_write_batch's look-up of a batch id after the lock relies on.
_SERVER_SETTINGS = {
    "application_name": "tuco",
    "idle_in_transaction_session_timeout": "30000",
    "default_transaction_isolation": "read committed",
}


class PostgresReplica:
    """One replica's hold on the PostgreSQL log: its state, its connections and its health (see the subclasses)."""

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
        replay: str = "all",
        follow: bool = True,
    ) -> None:
        if dsn is not None:
            try:
                check_database_url(dsn)
            except ValueError as exc:
                raise ConfigurationError(f"the database URL is invalid: {exc}") from None
        self._dsn = dsn
        self._session_attrs = ha.session_attributes(dsn)
        self._poll_interval = poll_interval
        self._use_notify = use_notify
        self._connect_timeout = connect_timeout
        self._pool_size = pool_size
        self._write_timeout = write_timeout
        self._secrets = secrets_of(dsn)
        self.database = _describe_target(dsn)
        self.batches_found_committed = 0
        """Batches whose retry found them already committed (their first reply was lost)."""
        self._unavailable_since: float | None = None
        self._commits = GroupCommit(self._commit, max_pending_bytes=max_pending_bytes)
        self._pool: asyncpg.Pool | None = None
        self._apply: Callable[[Event], object] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unavailable: LogUnavailableError | None = None
        self._read_only: LogReadOnlyError | None = None  # the role lacks a privilege writing needs
        self._privileges_seen_at = 0.0
        self._closed = False
        self._applied = 0
        self._applied_at: datetime | None = None
        self._head = 0
        self._head_at: datetime | None = None
        self._last_lag_log = 0.0
        self._clock_offset_ms = 0  # the database's clock minus ours, at most (see now_ms)
        self._clock_bounds: collections.deque[int] = collections.deque(maxlen=_CLOCK_READINGS)
        self._last: Any = None  # the last event applied (an Event or a row), to recognise our history
        self._recheck = False  # a connection failed: check the database still holds our history before going on
        # Read-through replicas (TUCO_STATE=cache) replay only the keys with a deadline or a lease; a
        # serverless function also follows nobody: between its requests it is frozen, so it jumps to the
        # head it sees instead of applying what others wrote (see tuco.cache).
        self._state_query = _pg_reads.EXPIRING_STATE_BY_SEQUENCE if replay == "expiring" else sql.STATE_BY_SEQUENCE
        self._follows = follow

    @property
    def failure(self) -> LogError | None:
        """Non-``None`` while the database is out of reach or the role may not write (readiness false), or after a
        fatal error."""
        return self._commits.failure or self._unavailable or self._read_only

    @property
    def last_sequence(self) -> int:
        """The last sequence handed to ``apply`` (or read by bootstrap)."""
        return self._applied

    def now_ms(self) -> int:
        """The database's clock, never behind it: this machine's plus the tightest recent bound of the offset.

        The database read its clock somewhere inside our round trip, so its reading
        minus when we asked bounds the offset from above. Reads hide a key once this
        passes its deadline, so a key or lease that has ended by the database's clock
        is never served as live (it may be hidden up to one round trip early; taking
        the middle of the round trip instead served keys a few ms past their deadline
        when the trip was lopsided). The database still decides every write: an
        expiry sent that early is refused, and retried.
        """
        return time.time_ns() // 1_000_000 + self._clock_offset_ms

    def _see_clock(self, db_now: int, asked_ns: int) -> None:
        """Keep an upper bound of the offset to the database's clock: the tightest of the last few readings."""
        bounds = self._clock_bounds
        bounds.append(int(db_now) + 1 - asked_ns // 1_000_000)  # the reading is whole ms, floored
        self._clock_offset_ms = min(bounds)

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
        }

    # -- connecting -------------------------------------------------------

    async def _connect(self, timeout: float) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn, timeout=max(timeout, 0.1), server_settings=_SERVER_SETTINGS, **self._connect_options()
        )

    def _connect_options(self) -> dict[str, Any]:
        """Ask the driver for the primary, unless the URL or ``PGTARGETSESSIONATTRS`` already does."""
        return {} if self._session_attrs is None else {"target_session_attrs": self._session_attrs}

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
                        found = await sql.ensure_schema(conn)
                        await self._see_privileges(conn)
                    finally:
                        await _close_quietly(conn)
                break
            except Exception as exc:
                if not is_driver_error(exc):
                    raise
                refused = refusal(exc)
                if refused is not None:  # waiting will not help: say so once and stop
                    raise LogFailedError(f"cannot use the database {self.database}: {refused}") from exc
                message = self._say(exc)
                transient = is_transient(exc)
                event = "database_unreachable" if transient else "database_error"
                _logger.warning(event, attempt=attempt, error=message, database=self.database)
                if not transient:
                    raise LogFailedError(
                        f"cannot use the database {self.database}: it answered with an error (logged as {event})"
                    ) from exc
                remaining = deadline - loop.time()
                if remaining <= 0 and is_not_primary(exc):  # it answered: "out of reach" would mislead
                    raise LogFailedError(
                        f"cannot use the database {self.database}: no host takes writes (a standby, or "
                        f"default_transaction_read_only on for this role or database); gave up after "
                        f"{self._connect_timeout} s"
                    ) from exc
                if remaining <= 0:
                    raise LogFailedError(
                        f"cannot reach the database {self.database} (gave up after {self._connect_timeout} s; "
                        f"the cause is logged as {event})"
                    ) from exc
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, _BACKOFF_CAP)
        if 0 < found < sql.SCHEMA_VERSION:
            _logger.info("database_schema_migrated", database=self.database, old=found, new=sql.SCHEMA_VERSION)
        _logger.info("database_ready", database=self.database, schema_version=sql.SCHEMA_VERSION)
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._pool_size,
            server_settings=_SERVER_SETTINGS,
            reset=_keep_session,
            **self._connect_options(),
        )
        return self._pool

    # -- privileges -------------------------------------------------------

    async def _see_privileges(self, conn: asyncpg.Connection) -> None:
        """Look up which privileges writing needs that the role lacks; readiness follows the answer."""
        self._set_read_only(await sql.missing_privileges(conn))

    def _set_read_only(self, missing: tuple[str, ...]) -> None:
        self._privileges_seen_at = time.monotonic()
        if not missing:
            if self._read_only is not None:
                self._read_only = None
                _logger.info("database_writable", database=self.database)
            return
        if self._read_only is not None and self._read_only.missing == missing:
            return
        self._read_only = LogReadOnlyError(f"the database role may not write: it lacks {', '.join(missing)}", missing)
        _logger.warning("database_read_only", database=self.database, missing_privileges=list(missing))

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
        """Log the driver's error, remember the outage, and return the error clients may see (no driver text)."""
        error = LogUnavailableError(f"the database is out of reach ({doing}); the cause is in tuco's log")
        self._recheck = True
        if self._unavailable is None or attempts <= 1 or attempts % 10 == 0:
            name = "database_unreachable" if is_transient(exc) else "database_error"
            if is_not_primary(exc):
                name = "database_not_primary"
            _logger.warning(name, doing=doing, attempt=attempts, error=self._say(exc))
        if self._unavailable_since is None:
            self._unavailable_since = asyncio.get_running_loop().time()
        self._unavailable = error
        return error

    def _mark_available(self) -> None:
        self._unavailable_since = None
        if self._unavailable is not None:
            self._unavailable = None
            _logger.info("database_reachable", database=self.database)

    def _say(self, exc: BaseException) -> str:
        return describe_error(exc, self._secrets)

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        """Write one batch (the group commit's callback): :class:`~tuco.log.postgres.PostgresTransactionLog`'s."""
        raise NotImplementedError


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to undo, so no round trip after every batch.

    Pool connections never LISTEN, take advisory locks or change settings;
    asyncpg itself still rolls back a transaction left open.
    """


async def _close_quietly(closing: asyncpg.Connection | asyncpg.Pool, timeout: float = 2.0) -> None:
    """Close a connection or a pool within ``timeout``, else (or if cancelled) terminate it."""
    try:
        async with asyncio.timeout(timeout):  # asyncio.wait_for (3.11) could drop a cancel arriving as it closed
            await closing.close()
    except Exception:
        closing.terminate()
    except asyncio.CancelledError:
        closing.terminate()
        raise


def _describe_target(dsn: str | None) -> str:
    if dsn is not None:
        return redact_dsn(dsn)
    env = os.environ
    user = env.get("PGUSER", "")
    hosts = ha.describe_hosts(env.get("PGHOST", "localhost"), env.get("PGPORT", "5432"))
    return f"postgresql://{user}{'@' if user else ''}{hosts}/{env.get('PGDATABASE', user)} (from PG* variables)"
