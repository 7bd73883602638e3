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

Layout. This module is the write path and bootstrap over :mod:`~tuco.log._pg_follower`
(following others' writes) and :mod:`~tuco.log._pg_replica` (state, connections,
health); the decisions are pure functions in :mod:`~tuco.log._pg_rows` (rows to
events and outcomes) and :mod:`~tuco.log._pg_errors` (every driver-error classification).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

import asyncpg

from tuco.core.events import Event, EventType, Lifetime
from tuco.core.snapshot import Item as SnapshotItem
from tuco.core.txn import Txn
from tuco.errors import LogClosedError, LogFailedError, LogReadOnlyError, LogUnavailableError
from tuco.log import _pg_schema as sql
from tuco.log._pg_errors import is_driver_error, is_not_primary, is_permission_denied, is_retriable
from tuco.log._pg_follower import PostgresFollower
from tuco.log._pg_origins import WRITE_TXN, moment
from tuco.log._pg_replica import _BACKOFF_FIRST, _CHUNK, _RETRY_CAP, _close_quietly, _logger
from tuco.log._pg_rows import (
    event_of,
    expected_revisions,
    expiring_outcomes,
    expiry_arguments,
    merge_leases,
    numbered_outcomes,
    origin_arguments,
    written_events,
)
from tuco.log._pg_snapshot import read_state
from tuco.log._pg_txn import txn_arguments, txn_outcome
from tuco.log.batching import Mutation, Outcome
from tuco.log.group_writes import WritesThroughGroupCommit
from tuco.log.redact import redact_dsn
from tuco.ports import CommitSink

__all__ = ["PostgresTransactionLog", "redact_dsn"]

_PRUNE_EVERY = 1000
_FOLLOWER_STOP = 5.0  # seconds a close waits for the follower (it closes its connection within 2)
_LAST_TRY = 1.0  # seconds one write attempt may take once the outage outlasted write_timeout


class PostgresTransactionLog(PostgresFollower, WritesThroughGroupCommit):
    """The :class:`~tuco.ports.TransactionLog` kept in PostgreSQL and shared by replicas.

    ``dsn=None`` uses the libpq ``PG*`` variables; a URL that does not parse
    unambiguously raises :class:`~tuco.errors.ConfigurationError`. ``connect_timeout``
    bounds start-up; writes get :class:`~tuco.errors.LogUnavailableError` once the
    database has been out of reach for ``write_timeout``. ``replay="expiring"``
    (read-through replicas) replays only the keys with a deadline or a lease and
    the leases; ``follow=False`` (a serverless function) starts no follower and
    jumps to each head it sees instead of applying others' events.
    """

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
                        batch, leases = merge_leases(batch, leases)
                    yield batch
                if leases:
                    yield leases
                # Its key has no row in tuco_state. Without it the store would stop short of the head and
                # label the state before that DELETE with an older revision (as it must if the event was pruned).
                # A keepalive or revoke at the head is replayed as it is: the latest word on its lease.
                if head_type == EventType.DELETE:
                    yield [Event(head, EventType.DELETE, head_key.decode())]
                elif head_type == EventType.TXN:  # its PUTs are rows above; its DELETEs left none: end at it
                    yield [Event(head, EventType.TXN, "", b"")]
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
            if not is_driver_error(exc):
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

    async def aclose(self) -> None:
        """Commit what is pending, stop the follower, close every connection."""
        if self._closed:
            return
        await self._commits.aclose()
        self._closed = True
        if self._follower is not None:
            follower, self._follower = self._follower, None
            follower.cancel()
            # Bounded: a follower that ignored its cancel must not hold the stop until the orchestrator's SIGKILL.
            done, _ = await asyncio.wait({follower}, timeout=_FOLLOWER_STOP)
            if not done:
                _logger.error("follower_did_not_stop", seconds=_FOLLOWER_STOP)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await _close_quietly(pool, timeout=5.0)

    # -- snapshots (StateSnapshots) ---------------------------------------

    async def snapshot_state(self, now: int) -> AsyncGenerator[tuple[int, Sequence[SnapshotItem]]]:
        """The state at the head, from one repeatable-read transaction on a connection of its own."""
        try:
            async for batch in read_state(lambda: self._connect(self._write_timeout), now):
                yield batch
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            raise LogUnavailableError(f"cannot read the state for a snapshot: {self._say(exc)}") from exc

    # -- watching (EventHistory) ------------------------------------------

    async def events_after(self, revision: int, upto: int, limit: int) -> Sequence[Event]:
        """Committed events in ``(revision, upto]`` from ``tuco_events``, for watchers older than memory."""
        if self._closed or self._pool is None:
            raise LogClosedError("the log is not running")
        try:
            async with asyncio.timeout(self._write_timeout), self._pool.acquire() as conn:
                rows = await conn.fetch(sql.EVENTS_AFTER, revision, upto, limit)
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            raise self._mark_unavailable(exc, "reading events for a watch") from exc
        return [event_of(row) for row in rows]

    # -- writing ----------------------------------------------------------

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        pool = self._pool
        if pool is None:
            raise LogClosedError("the log is not open")
        loop = asyncio.get_running_loop()
        started = loop.time()
        txn = batch[0].txn
        arguments: tuple[Any, ...]
        if txn is not None:  # alone in its batch: one call of tuco_txn
            origin = batch[0].origin
            by, reason = (None, None) if origin is None else (origin[0], origin[2])
            arguments = (uuid.uuid4(), *txn_arguments(txn), by, reason)
        else:
            arguments = (
                uuid.uuid4(),
                [int(m.type) for m in batch],
                [m.key.encode() for m in batch],
                [m.value for m in batch],
                expected_revisions(batch),
            )
            if any(m.expiry is not None for m in batch):
                arguments += expiry_arguments(batch)
            arguments += origin_arguments(batch)
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
                        if is_not_primary(exc):  # demoted under us: nothing was written; go find the primary
                            conn.terminate()
                        raise
            except Exception as exc:
                if not is_driver_error(exc):
                    raise
                if is_permission_denied(exc):  # the database answered: no outage, and no retry will help
                    raise await self._refused_for_privileges(pool, exc) from exc
                if self._unavailable_since is None:
                    self._unavailable_since = tried_at
                self._recheck = True
                if is_not_primary(exc) and not moved:  # a pooled connection to a node demoted since
                    moved = True  # one more try at once, on a new connection, even late in an outage
                    continue
                remaining = self._unavailable_since + self._write_timeout - loop.time()
                if not is_retriable(exc) or remaining <= 0:
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
            if not is_driver_error(check):
                raise
        if self._read_only is None:  # every privilege tuco looks for is held: another one is missing
            self._set_read_only(("a privilege the database names in tuco's log",))
        return self._read_only or LogReadOnlyError("the database role may not write")

    async def _commit_once(
        self, conn: asyncpg.Connection, batch: Sequence[Mutation], arguments: tuple[Any, ...]
    ) -> Sequence[Outcome]:
        """One round trip writes the batch; catching up with other replicas happens around it, never under a lock."""
        if self._recheck:  # after a lost connection (a failover?): is our history still the database's?
            await self._check_history(conn)
        if self._head > self._applied:  # others wrote (NOTIFY said so): catch up first, so the gap after is small
            await self._fill(conn, self._head)
        txn = batch[0].txn
        if txn is not None:
            return [await self._commit_txn(conn, txn, arguments)]
        expiring = len(arguments) > 7
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
            return expiring_outcomes(
                batch, [event_of(row) for row in rows], dict(zip(refused or (), revisions or (), strict=True))
            )
        if refused:
            return numbered_outcomes(batch, first, dict(zip(refused, revisions, strict=True)), moment(committed_at))
        return written_events(batch, first, moment(committed_at))

    async def _commit_txn(self, conn: asyncpg.Connection, txn: Txn, arguments: tuple[Any, ...]) -> Outcome:
        """One call of tuco_txn; its event (if it wrote) is read back, as every follower reads it."""
        rows = await conn.fetch(WRITE_TXN, *arguments)
        header = next(row for row in rows if row[0] == 0)
        revision = int(header[5])
        event = None
        if header[1] >= 0 and header[4] == 1:
            found = await conn.fetch(sql.EVENTS_AFTER, revision - 1, revision, 1)
            if not found:
                raise LogFailedError(f"the database recorded transaction {revision} but its event is not there")
            self._see_head(revision, found[0][4])
            event = event_of(found[0])
            await self._fill(conn, revision - 1)
            if self._applied < revision - 1:
                raise LogFailedError(f"events before sequence {revision} are missing; cannot apply it in order")
        if header[6] == 1:
            self.batches_found_committed += 1
            _logger.info("batch_already_committed", first_sequence=revision, last_sequence=revision)
        return txn_outcome(txn, rows, event)

    async def _prune(self, conn: asyncpg.Connection) -> None:
        """Forget batch ids older than an hour; a failure only postpones it to the next round."""
        try:
            await conn.execute(sql.PRUNE_BATCHES)
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            _logger.warning("batch_prune_failed", error=self._say(exc))

    def _apply_own(self, event: Event) -> None:
        """GroupCommit's apply: skip our events the follower already delivered."""
        if event.sequence == self._applied + 1 and self._apply is not None:
            self._apply(event)
            self._applied = event.sequence
            self._applied_at = self._head_at
            self._last = event
