"""Following the PostgreSQL log: other replicas' writes applied in sequence, and the history checked after a failover.

The follower listens for ``NOTIFY`` (and polls) on a connection of its own,
reconnecting with backoff after any failure; after a reconnection it checks the
database still holds what this replica applied (see :mod:`tuco.log._pg_failover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import asyncpg

from tuco.core.events import Event
from tuco.errors import LogClosedError, LogFailedError
from tuco.log import _pg_failover as ha
from tuco.log import _pg_schema as sql
from tuco.log._pg_errors import NotPrimaryError, is_driver_error
from tuco.log._pg_replica import (
    _BACKOFF_FIRST,
    _CHUNK,
    _PRIVILEGE_RECHECK,
    _RETRY_CAP,
    PostgresReplica,
    _close_quietly,
    _logger,
)
from tuco.log._pg_rows import event_of

__all__ = ["PostgresFollower"]


class PostgresFollower(PostgresReplica):
    """A replica that applies every event committed anywhere, in sequence, stopping at a gap."""

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
                except NotPrimaryError:
                    conn.terminate()  # a demoted node: the pool opens its next connection to the primary
                    raise
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            raise self._mark_unavailable(exc, "catching up") from exc
        self._mark_available()

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
                    # Not asyncio.wait_for: on Python 3.11 a stop arriving with a NOTIFY's wake-up is dropped
                    # there, and the follower (and the close waiting for it) would run on forever.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll_interval):
                            await self._wake.wait()
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
                apply(event_of(row))
            self._applied = sequence
            self._applied_at = row[4]
            self._last = row
        return True

    async def _read_head(self, conn: asyncpg.Connection) -> int:
        """Read the head (and the database's clock) from the primary; raise NotPrimaryError on any other node."""
        asked = time.time_ns()
        row = await conn.fetchrow(ha.READ_PRIMARY_HEAD)
        if row[3]:
            raise NotPrimaryError("the node is a standby or read-only")
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
