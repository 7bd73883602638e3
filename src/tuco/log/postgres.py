"""The PostgreSQL transaction log: many replicas, one ordered history.

Sequencing. A batch is written by one statement, a call of the server-side
function ``tuco_write_batch`` (see :mod:`tuco.log._pg_schema`), which runs and
commits in one round trip: it takes the row lock on ``tuco_head`` (serializing
writers across all replicas), numbers the events from the head, inserts them,
applies them to ``tuco_state``, moves the head, records the batch id and sends
``NOTIFY tuco_events``, then commits and only then replies. The lock is never
held while a client is away: a replica frozen mid-write (SIGSTOP, a GC pause,
a partitioned VM) stalls nobody. Sequence N+1 cannot be assigned before N
committed, so no reader can see N+1 without N: the history has no gaps to step
past (a BIGSERIAL would allow them). The follower still stops at a gap if it
ever saw one.

Conditional writes. Preconditions are decided by the same function, under
the head lock, in the batch's order: against ``tuco_state`` (which every
replica's batches keep current) and the batch's earlier mutations of the key.
So the decision and the write are one atomic step in log order, and two
replicas racing on one key can never both win. A refused mutation is not
written, takes no sequence, and comes back as a
:class:`~tuco.errors.PreconditionFailedError` carrying the revision it met.
A batch without conditions passes ``NULL`` and skips the deciding.

Order in the local store. A replica applies events strictly in sequence. Before
writing it catches up with what it knows others wrote (NOTIFY told it the head),
outside any lock; after the write it applies the events between its position and
its own first sequence (all committed before its lock was granted), then its own.

Exactly once across a lost connection. Each batch carries a random id, recorded
by the same statement. A retry after an unknown outcome calls the function with
the same id; after taking the lock (which waits for an earlier attempt still
committing) it finds the id and returns the outcome already committed (range
and refusals, recorded with the id) instead of deciding and writing again
(``batches_found_committed`` counts these). Batch ids older than an hour are
pruned every ``_PRUNE_EVERY`` batches; retries happen within seconds.

Outages. A write retries a lost database until it has been out of reach for
``write_timeout`` (counted from the first failure, for every write alike), then
its writers get :class:`~tuco.errors.LogUnavailableError` (503): never
acknowledged, possibly stored. From then on each batch is tried once (for at
most ``_LAST_TRY`` seconds) until the database answers again. Driver messages
are logged; the errors say what happened in tuco's words.

Failover. Connections ask for the primary; a node answering as read-only is
not the primary (the write is retried elsewhere, the batch id keeping it
exactly once across the move); heads are read only from a writable primary;
after a reconnection the database's history is checked against what this
replica applied (see :mod:`tuco.log._pg_failover`).

Bootstrap costs time in proportion to the live data, not the history: in one
REPEATABLE READ snapshot it reads the head S and streams ``tuco_state`` in
sequence order as PUT events (each the latest for its key, all at or below S),
carrying the key's create_revision and version, so the store holds the same
revisions as the database (followed events carry 0 and the store derives
them), then the DELETE at S if the head is one, so the store's revision is S.
The follower then takes over from S, on NOTIFY or every ``poll_interval``.
Live leases (at most ``TUCO_MAX_LEASES``) are read first and merged in by
their grant's sequence, so a key's lease is known before the key.

Expiry. The database's clock decides: a batch with a deadline, a lease or an
expired-only DELETE goes to the eight-argument write function, which computes
deadlines as ``clock_timestamp() + ttl`` and refuses an expiry DELETE unless the
key's deadline (or its lease's) has passed by that clock, under the head lock.
Replicas' clocks disagree; the database is the one clock they share, so one key
expires at one moment for all of them, a keepalive decided there always wins
over an expiry decided after it, and two replicas expiring one key write one
DELETE. Each replica estimates the database's clock (:meth:`now_ms`) from every
head read, to schedule its expirer and to hide expired keys from reads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import structlog

from tuco.core.events import Event, EventType, Lifetime
from tuco.errors import (
    ConfigurationError,
    LeaseNotFoundError,
    LogClosedError,
    LogError,
    LogFailedError,
    LogReadOnlyError,
    LogUnavailableError,
    PreconditionFailedError,
)
from tuco.log import _pg_failover as ha
from tuco.log import _pg_reads
from tuco.log import _pg_schema as sql
from tuco.log.batching import GroupCommit, Mutation, Outcome, WritesThroughGroupCommit
from tuco.log.redact import check_database_url, password_of, redact_dsn
from tuco.ports import CommitSink

__all__ = ["PostgresTransactionLog", "redact_dsn"]

_logger = structlog.get_logger("tuco.log")
_CHUNK = 10_000
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
# Waiting writes and the follower retry at least this often: after a failover the new primary is found within
# about this long (plus a connection and a commit), and trying a refused or fast-failing host list is cheap.
_RETRY_CAP = 0.5
_LAG_LOG_EVERY = 10.0
_PRUNE_EVERY = 1000
_LAST_TRY = 1.0  # seconds one write attempt may take once the outage outlasted write_timeout
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


class PostgresTransactionLog(WritesThroughGroupCommit):
    """The :class:`~tuco.ports.TransactionLog` kept in PostgreSQL and shared by replicas.

    ``dsn=None`` uses the libpq ``PG*`` variables; a URL that does not parse
    unambiguously raises :class:`~tuco.errors.ConfigurationError`. ``connect_timeout``
    bounds start-up; writes get :class:`~tuco.errors.LogUnavailableError` once the
    database has been out of reach for ``write_timeout``. ``replay="expiring"``
    (read-through replicas) replays only the keys with a deadline or a lease and
    the leases; ``follow=False`` (a serverless function) starts no follower and
    jumps to each head it sees instead of applying others' events.
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
        self._secrets = _secrets_of(dsn)
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

    async def open(self) -> None:
        """Reach the database and make sure the schema is there."""
        await self._open()

    async def read_events(self) -> AsyncIterator[Sequence[Event]]:
        """Yield the current state as PUT events in sequence order: one per live key, with its revisions.

        If the head is a DELETE, that event comes last, so the replayed revision is the head's.
        """
        pool = await self._open()
        try:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                asked = time.time_ns()
                head, head_at, head_type, head_key, head_deadline, head_lease, head_ttl, db_now = await conn.fetchrow(
                    sql.BOOTSTRAP_HEAD
                )
                self._see_clock(db_now, asked)
                leases = [
                    Event(r[0], EventType.LEASE_GRANT, "", r[3], 0, 0, Lifetime(r[2], r[0], r[1]))
                    for r in await conn.fetch(sql.LIVE_LEASES)
                ]
                tokens = [
                    Event(r[0], EventType.TOKEN_CREATE, r[1].decode(), r[2]) for r in await conn.fetch(sql.LIVE_TOKENS)
                ]
                if tokens:  # leases and tokens both come in by sequence, merged among the keys
                    leases = sorted(leases + tokens)
                cursor = await conn.cursor(self._state_query)
                while rows := await cursor.fetch(_CHUNK):
                    batch = [
                        Event(r[0], EventType.PUT, r[1].decode(), r[2], r[3], r[4])
                        if r[5] is None and r[6] is None
                        else Event(r[0], EventType.PUT, r[1].decode(), r[2], r[3], r[4], Lifetime(r[5] or 0, r[6] or 0))
                        for r in rows
                    ]
                    if leases and leases[0].sequence < rows[-1][0]:
                        batch, leases = _merge_leases(batch, leases)
                    yield batch
                if leases:
                    yield leases
                # Its key has no row in tuco_state. Without it the store would stop short of the head and
                # label the state before that DELETE with an older revision (as it must if the event was pruned).
                # A keepalive or revoke at the head is replayed as it is: the latest word on its lease.
                if head_type == EventType.DELETE:
                    yield [Event(head, EventType.DELETE, head_key.decode())]
                elif head_type == EventType.TOKEN_REVOKE:
                    yield [Event(head, EventType.TOKEN_REVOKE, head_key.decode())]
                elif head_type in (EventType.LEASE_KEEPALIVE, EventType.LEASE_REVOKE):
                    yield [
                        Event(
                            head,
                            EventType(head_type),
                            "",
                            b"",
                            0,
                            0,
                            Lifetime(head_deadline or 0, head_lease, head_ttl or 0),
                        )
                    ]
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise self._mark_unavailable(exc, "reading the state") from exc
        self._applied = self._head = head
        self._applied_at = self._head_at = head_at

    async def run(self, sink: CommitSink) -> None:
        """Start the group commit and the follower of other replicas' writes."""
        await self._open()
        self._apply = sink.apply
        self._commits.start(self._apply_own)
        if self._follows:
            self._follower = asyncio.get_running_loop().create_task(self._follow(), name="tuco-pg-follower")

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

    async def catch_up(self) -> None:
        """Apply everything committed anywhere up to the current head; raise if the database is out of reach."""
        if self._closed or self._pool is None or self._apply is None:
            raise LogClosedError("the log is not running")
        try:
            async with asyncio.timeout(self._write_timeout), self._pool.acquire() as conn:
                try:
                    if self._recheck:
                        await self._check_history(conn)
                    head = await self._read_head(conn)
                    await self._fill(conn, head)
                except ha.NotPrimaryError:
                    conn.terminate()  # a demoted node: the pool opens its next connection to the primary
                    raise
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise self._mark_unavailable(exc, "catching up") from exc
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

    # -- watching (EventHistory) ------------------------------------------

    async def events_after(self, revision: int, upto: int, limit: int) -> Sequence[Event]:
        """Committed events in ``(revision, upto]`` from ``tuco_events``, for watchers older than memory."""
        if self._closed or self._pool is None:
            raise LogClosedError("the log is not running")
        try:
            async with asyncio.timeout(self._write_timeout), self._pool.acquire() as conn:
                rows = await conn.fetch(sql.EVENTS_AFTER, revision, upto, limit)
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            raise self._mark_unavailable(exc, "reading events for a watch") from exc
        return [_event(row) for row in rows]

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
                if not _is_driver_error(exc):
                    raise
                refused = sql.refusal(exc)
                if refused is not None:  # waiting will not help: say so once and stop
                    raise LogFailedError(f"cannot use the database {self.database}: {refused}") from exc
                message = self._say(exc)
                transient = sql.is_transient(exc)
                event = "database_unreachable" if transient else "database_error"
                _logger.warning(event, attempt=attempt, error=message, database=self.database)
                if not transient:
                    raise LogFailedError(
                        f"cannot use the database {self.database}: it answered with an error (logged as {event})"
                    ) from exc
                remaining = deadline - loop.time()
                if remaining <= 0 and ha.is_not_primary(exc):  # it answered: "out of reach" would mislead
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

    # -- writing ----------------------------------------------------------

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        pool = self._pool
        if pool is None:
            raise LogClosedError("the log is not open")
        loop = asyncio.get_running_loop()
        started = loop.time()
        arguments: tuple[Any, ...] = (
            uuid.uuid4(),
            [int(m.type) for m in batch],
            [m.key.encode() for m in batch],
            [m.value for m in batch],
            _expected(batch),
        )
        if any(m.expiry is not None for m in batch):
            arguments += _expiry_arguments(batch)
        delay = _BACKOFF_FIRST
        attempt = 0
        moved = False
        while True:
            attempt += 1
            tried_at = loop.time()
            # The budget runs from the first failure of this outage, for every write alike.
            deadline = (started if self._unavailable_since is None else self._unavailable_since) + self._write_timeout
            # A batch always gets one real try, even late in a long outage; retries stay within the budget.
            budget = max(deadline - tried_at, _LAST_TRY if attempt == 1 else 0.05)
            try:
                async with asyncio.timeout(budget), pool.acquire() as conn:
                    try:
                        outcomes = await self._commit_once(conn, batch, arguments)
                    except Exception as exc:
                        if ha.is_not_primary(exc):  # demoted under us: nothing was written; go find the primary
                            conn.terminate()
                        raise
            except Exception as exc:
                if not _is_driver_error(exc):
                    raise
                if sql.is_permission_denied(exc):  # the database answered: no outage, and no retry will help
                    raise await self._refused_for_privileges(pool, exc) from exc
                if self._unavailable_since is None:
                    self._unavailable_since = tried_at
                self._recheck = True
                if ha.is_not_primary(exc) and not moved:  # a pooled connection to a node demoted since
                    moved = True  # one more try at once, on a new connection, even late in an outage
                    continue
                remaining = self._unavailable_since + self._write_timeout - loop.time()
                if not ha.is_retriable(exc) or remaining <= 0:
                    raise self._mark_unavailable(exc, "writing", attempts=attempt) from exc
                _logger.info("commit_retry", attempt=attempt, error=self._say(exc))
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, _RETRY_CAP)
                continue
            self._mark_available()
            if self._read_only is not None:  # granted meanwhile: the commit itself proves it
                self._set_read_only(())
            return outcomes

    async def _refused_for_privileges(self, pool: asyncpg.Pool, exc: BaseException) -> LogReadOnlyError:
        """The error for a write the database refused for a missing privilege, naming the ones missing if it can."""
        _logger.warning("database_permission_denied", doing="writing", error=self._say(exc))
        try:
            async with asyncio.timeout(self._write_timeout), pool.acquire() as conn:
                await self._see_privileges(conn)
        except Exception as check:
            if not _is_driver_error(check):
                raise
        if self._read_only is None:  # every privilege tuco looks for is held: another one is missing
            self._set_read_only(("a privilege the database names in tuco's log",))
        return self._read_only or LogReadOnlyError("the database role may not write")

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

    async def _commit_once(
        self, conn: asyncpg.Connection, batch: Sequence[Mutation], arguments: tuple[Any, ...]
    ) -> Sequence[Outcome]:
        """One round trip writes the batch; catching up with other replicas happens around it, never under a lock."""
        if self._recheck:  # after a lost connection (a failover?): is our history still the database's?
            await self._check_history(conn)
        if self._head > self._applied:  # others wrote (NOTIFY said so): catch up first, so the gap after is small
            await self._fill(conn, self._head)
        expiring = len(arguments) > 5
        statement = sql.WRITE_EXPIRING_BATCH if expiring else sql.WRITE_BATCH
        first, last, committed_at, replayed, refused, revisions = await conn.fetchrow(statement, *arguments)
        written = len(batch) - len(refused) if refused else len(batch)
        if last - first + 1 != written:
            raise LogFailedError(f"the database recorded this batch as {last - first + 1} events, not {written}")
        if replayed:
            self.batches_found_committed += 1
            _logger.info("batch_already_committed", first_sequence=first, last_sequence=last)
        if written:
            self._see_head(last, committed_at)
        # Everything before our first sequence committed before our lock was granted: apply it first. After a
        # refusal that includes the write it was judged against, so a reader here sees the revision it names.
        await self._fill(conn, first - 1)
        if self._applied < first - 1:
            raise LogFailedError(f"events before sequence {first} are missing; cannot apply this batch in order")
        if self._commits.batches % _PRUNE_EVERY == _PRUNE_EVERY - 1:
            await self._prune(conn)
        if expiring:  # the database set the deadlines: the events are read back as every follower reads them
            rows = await conn.fetch(sql.EVENTS_AFTER, first - 1, last, max(written, 1))
            return _expiring_outcomes(
                batch, [_event(row) for row in rows], dict(zip(refused or (), revisions or (), strict=True))
            )
        if refused:
            return _outcomes(batch, first, dict(zip(refused, revisions, strict=True)))
        return [Event(first + i, m.type, m.key, m.value) for i, m in enumerate(batch)]

    async def _prune(self, conn: asyncpg.Connection) -> None:
        """Forget batch ids older than an hour; a failure only postpones it to the next round."""
        try:
            await conn.execute(sql.PRUNE_BATCHES)
        except Exception as exc:
            if not _is_driver_error(exc):
                raise
            _logger.warning("batch_prune_failed", error=self._say(exc))

    def _apply_own(self, event: Event) -> None:
        """GroupCommit's apply: skip our events the follower already delivered."""
        if event.sequence == self._applied + 1 and self._apply is not None:
            self._apply(event)
            self._applied = event.sequence
            self._applied_at = self._head_at
            self._last = event

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
                head: int | None = None
                delay, attempt = _BACKOFF_FIRST, 0
                while not conn.is_closed():
                    self._wake.clear()
                    async with asyncio.timeout(max(30.0, 4 * self._poll_interval)):
                        if head is None:  # a new connection, maybe to a new primary: is our history still there?
                            head = await self._check_history(conn)
                        else:
                            head = await self._read_head(conn)
                        await self._fill(conn, head)
                        if (
                            self._read_only is not None
                            and time.monotonic() >= self._privileges_seen_at + _PRIVILEGE_RECHECK
                        ):
                            await self._see_privileges(conn)  # granted since? then ready again, no restart
                    self._mark_available()
                    self._log_lag(loop.time())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except LogFailedError as exc:  # the history diverged: following on would serve a wrong state
                self._commits.fail(exc)
                return
            except Exception as exc:  # never let the follower die: log, back off, reconnect
                attempt += 1
                self._mark_unavailable(exc, "following", attempts=attempt)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_CAP)
            finally:
                if conn is not None:
                    await _close_quietly(conn)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            head = int(str(payload))
        except ValueError:
            self._wake.set()
            return
        self._head = max(self._head, head)
        if head > self._applied:  # not just our own write, already applied: there is something to fetch
            self._wake.set()

    def _on_terminated(self, conn: object) -> None:
        self._wake.set()

    async def _fill(self, conn: asyncpg.Connection, upto: int) -> None:
        """Apply the committed events after the last applied one, up to ``upto``, in chunks."""
        if not self._follows:
            self._applied = max(self._applied, upto)
            return
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
            self._last = row
        return True

    async def _read_head(self, conn: asyncpg.Connection) -> int:
        """Read the head (and the database's clock) from the primary; raise NotPrimaryError on any other node."""
        asked = time.time_ns()
        row = await conn.fetchrow(ha.READ_PRIMARY_HEAD)
        if row[3]:
            raise ha.NotPrimaryError("the node is a standby or read-only")
        self._see_clock(row[2], asked)
        self._see_head(row[0], row[1])
        return int(row[0])

    async def _check_history(self, conn: asyncpg.Connection) -> int:
        """Make sure the database still holds what this replica applied (fail the log if not); return the head.

        A promoted asynchronous standby may lack the last acknowledged writes: its head is behind our
        position, or (once others wrote again) our position holds another event.
        """
        applied, last = self._applied, self._last  # before the head: what is applied meanwhile may be newer
        head = await self._read_head(conn)
        if head < applied:
            raise self._diverged(f"the database's history ends at sequence {head}, before this replica's {applied}")
        if last is not None:
            mine = (last.sequence, int(last.type), last.key.encode()) if isinstance(last, Event) else None
            if mine is None:
                mine = (int(last[0]), int(last[1]), bytes(last[2]))
            if mine[0] == applied and await ha.event_at(conn, applied) != mine[1:]:
                raise self._diverged(f"the database holds another event at sequence {applied} than this replica")
        self._recheck = False
        return head

    def _diverged(self, what: str) -> LogFailedError:
        """Fail the log: the database lost writes this replica applied (and acknowledged, if they were its own)."""
        error = LogFailedError(
            f"{what}: it lost acknowledged writes (an asynchronous standby promoted?); "
            "this replica stops taking writes: restart it to follow the database's history"
        )
        _logger.error("database_history_diverged", detail=what, applied=self._applied)
        self._commits.fail(error)
        return error

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
            name = "database_unreachable" if sql.is_transient(exc) else "database_error"
            if ha.is_not_primary(exc):
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
        """A one-line description of a driver error, for the log, with any password blanked out."""
        text = f"{type(exc).__name__}: {exc}".strip().removesuffix(":")
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())


def _expected(batch: Sequence[Mutation]) -> list[int | None] | None:
    """The write function's ``expected`` argument: each mutation's required mod_revision; None if none has one."""
    if all(m.precondition is None for m in batch):
        return None
    return [None if m.precondition is None else m.precondition.mod_revision for m in batch]


def _outcomes(batch: Sequence[Mutation], first: int, refused: Mapping[int, int]) -> list[Outcome]:
    """Number the written mutations from ``first``; ``refused`` maps 1-based ordinals to the revision they met."""
    outcomes: list[Outcome] = []
    sequence = first
    for n, m in enumerate(batch, 1):
        current = refused.get(n)
        if current is None:
            outcomes.append(Event(sequence, m.type, m.key, m.value))
            sequence += 1
        else:
            outcomes.append(PreconditionFailedError(m.key, current))
    return outcomes


def _expiry_arguments(batch: Sequence[Mutation]) -> tuple[list[int | None], list[int | None], list[bool]]:
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


def _expiring_outcomes(batch: Sequence[Mutation], events: list[Event], refused: Mapping[int, int]) -> list[Outcome]:
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


def _merge_leases(batch: list[Event], leases: list[Event]) -> tuple[list[Event], list[Event]]:
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


def _event(row: Any) -> Event:
    if len(row) > 5 and (row[5] is not None or row[6] is not None):
        lifetime = Lifetime(row[5] or 0, row[6] or 0, row[7] or 0)
        return Event(row[0], EventType(row[1]), row[2].decode(), row[3], 0, 0, lifetime)
    return Event(row[0], EventType(row[1]), row[2].decode(), row[3])


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
            TimeoutError,
            ha.NotPrimaryError,
        ),
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to undo, so no round trip after every batch.

    Pool connections never LISTEN, take advisory locks or change settings;
    asyncpg itself still rolls back a transaction left open.
    """


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=2.0)
    except Exception:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise


def _secrets_of(dsn: str | None) -> tuple[str, ...]:
    """The password as it may appear in a driver's message: decoded and as written in the URL."""
    password = os.environ.get("PGPASSWORD") if dsn is None else password_of(dsn)
    if not password:
        return ()
    return tuple(dict.fromkeys((password, quote(password, safe=""))))


def _describe_target(dsn: str | None) -> str:
    if dsn is not None:
        return redact_dsn(dsn)
    env = os.environ
    user = env.get("PGUSER", "")
    hosts = ha.describe_hosts(env.get("PGHOST", "localhost"), env.get("PGPORT", "5432"))
    return f"postgresql://{user}{'@' if user else ''}{hosts}/{env.get('PGDATABASE', user)} (from PG* variables)"
