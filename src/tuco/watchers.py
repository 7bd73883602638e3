"""Watchers and long polls: cursors over the store's History, woken by ``Service.apply``.

The service owns one :class:`Watchers` and hands it the replica it watches
(:class:`Replica`: its revision, store and log), so nothing here imports the
service.

A watch is a cursor (the last revision it examined) over History, not a queue:
a change is kept once, in History, however many watch it. ``apply`` only tells
the hub that something changed (one attribute check while nobody watches, one
flag and at most one ``call_soon`` per loop turn while anyone does); the hub
wakes the waiting watches, and each reads on from its cursor when its stream
asks for more, so a writer never waits for a watcher and what waits for a slow
one is bounded by its connection's buffers. The watches are woken
``_WAKE_SLICE`` per loop turn: between two slices the loop reads the sockets
again, so a write that arrives while a thousand watchers send the last one
waits for one slice of them, not for all. Long polls wait per key: the hub
looks at each batch of changes once and wakes the polls of the keys it touched.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from tuco.core.store import Store
from tuco.core.tokens import Principal
from tuco.core.watch import Selector, WatchEvent, events_from_changes, events_from_log
from tuco.errors import HistoryCompactedError, LogError, RevisionAheadError, TooManyWatchersError, WatcherShareError
from tuco.ports import EventHistory, TransactionLog

__all__ = ["Hub", "Replica", "Step", "Watch", "WatchSettings", "WatchStep", "Watchers"]


_WATCH_BATCH = 1000  # changes examined per step; a step's events go out as one chunk
_WAKE_SLICE = 8  # watches woken per loop turn (the sockets are read between two slices)


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Bounds on watching, and the browser origins the API answers (``TUCO_WATCH_*``, ``TUCO_CORS_ORIGINS``)."""

    max_watchers: int = 1000
    """Open watch streams at once; more get 503 too_many_watchers."""
    max_watchers_per_principal: int = 0
    """Open watch streams of one principal (admins excepted); 0: a quarter of ``max_watchers``."""
    max_lag_events: int = 100_000
    """A live watch this many revisions behind the store is ended with a resume point."""
    heartbeat_seconds: float = 15.0
    """An idle stream gets a heartbeat comment and a progress event this often."""
    allow_origins: frozenset[str] = frozenset()
    """Browser origins (``Origin`` header values) whose pages may call the API (:mod:`tuco.http.cors`); ``*``: any."""

    @property
    def watcher_share(self) -> int:
        """How many watch streams one principal may hold: the setting, or a quarter of the cap (at least 1)."""
        return self.max_watchers_per_principal or max(1, self.max_watchers // 4)


class WatchStep(enum.Enum):
    """What a watch's next step produced."""

    EVENTS = "events"
    PROGRESS = "progress"
    CANCEL = "cancel"


class Step(NamedTuple):
    """One step of a watch: events; or, idle, the revision examined so far; or the end, why and where to resume."""

    kind: WatchStep
    events: list[WatchEvent]
    revision: int = 0
    """PROGRESS: every change up to it was examined. CANCEL: the start_revision that resumes without a gap."""
    reason: str = ""


_NONE: list[WatchEvent] = []


class Replica(Protocol):
    """What watchers read of the replica they watch: the service (its store may be replaced: asked each time)."""

    @property
    def revision(self) -> int: ...
    @property
    def store(self) -> Store: ...
    @property
    def log(self) -> TransactionLog: ...


class Hub:
    """Who waits for changes: watch streams (woken together) and long polls (woken per key)."""

    __slots__ = ("_loop", "_scheduled", "_seen", "_service", "_waiting", "key_waiters", "watches")

    def __init__(self, service: Replica) -> None:
        self._service = service
        self._loop = asyncio.get_running_loop()
        self._waiting: dict[asyncio.Future[None], None] = {}  # the watches waiting for a change, in order
        self._scheduled = False
        self._seen = service.revision  # long polls: changes up to here were looked at
        self.watches: set[Watch] = set()
        self.key_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    def changed(self) -> None:
        """Called by apply for every event: O(1), at most one wake-up scheduled per loop turn."""
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._fire)

    def _fire(self) -> None:
        self._scheduled = False
        if self._waiting:
            waiting = list(self._waiting)
            self._waiting.clear()
            self._wake(waiting, 0)
        service = self._service
        current = service.revision
        if self.key_waiters:
            try:
                changes = service.store.history.changes_after(self._seen, current - self._seen)
            except HistoryCompactedError:
                for key in list(self.key_waiters):
                    self._wake_key(key, None)
            else:
                for change in changes:
                    if change[2] in self.key_waiters:
                        self._wake_key(change[2], change[0])
        self._seen = current

    def _wake_key(self, key: str, revision: int | None) -> None:
        """Resolve the long polls on ``key`` waiting for ``revision`` or earlier (all when None)."""
        waiting = self.key_waiters[key]
        kept = []
        for wanted, future in waiting:
            if revision is None or wanted <= revision:
                if not future.done():
                    future.set_result(None)
            else:
                kept.append((wanted, future))
        if kept:
            self.key_waiters[key] = kept
        else:
            del self.key_waiters[key]

    def _wake(self, waiting: list[asyncio.Future[None]], start: int) -> None:
        """Wake ``_WAKE_SLICE`` watches from ``start``; the next slice in the next loop turn."""
        end = start + _WAKE_SLICE
        for future in waiting[start:end]:
            if not future.done():
                future.set_result(None)
        if end < len(waiting):
            self._loop.call_soon(self._wake, waiting, end)

    async def wait(self, timeout: float) -> None:
        """Until the next change (or shutdown), at most ``timeout`` seconds."""
        future = self._loop.create_future()
        self._waiting[future] = None
        timer = self._loop.call_later(timeout, _wake_one, future)
        try:
            await future
        finally:
            timer.cancel()
            self._waiting.pop(future, None)

    def end(self) -> None:
        """Wake everyone now: the service is stopping."""
        waiting = list(self._waiting)
        self._waiting.clear()
        for future in waiting:
            if not future.done():
                future.set_result(None)
        for key in list(self.key_waiters):
            self._wake_key(key, None)

    @property
    def idle(self) -> bool:
        return not self.watches and not self.key_waiters


def _wake_one(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Watch:
    """One watch stream's cursor: ``after`` is the last revision examined; changes after it are still to come.

    ``live`` is true from the start when the watch starts within ``max_lag_events``
    of the store's revision, else once the cursor first reaches it; a live
    cursor more than ``max_lag_events`` behind is ended (a slow consumer).
    Catching up from an old revision is paced by the reader and is never cut
    for lag, but once memory dropped its place it reads from the log, if the log
    can (:class:`~tuco.ports.EventHistory`), or ends.
    """

    __slots__ = ("_last_sent", "_service", "_watchers", "after", "closed", "live", "owner", "selector")

    def __init__(self, watchers: Watchers, selector: Selector, after: int, owner: str = "") -> None:
        self._watchers = watchers
        service = self._service = watchers.replica
        self.owner = owner
        """The principal that opened it ("" with authentication off): what its share is counted by."""
        self.selector = selector
        self.after = after
        # A watch that starts within the lag bound is live at once; one further back is catching up until it
        # first reaches the store's revision (else one that never caught up could never be cut).
        self.live = service.revision - after <= watchers.settings.max_lag_events
        self.closed = False
        self._last_sent = asyncio.get_running_loop().time()

    async def next(self) -> Step:
        """The next events, or a progress revision when idle for a heartbeat, or why and where it ends."""
        service = self._service
        watchers = self._watchers
        limits = watchers.settings
        history = service.store.history
        loop = asyncio.get_running_loop()
        while True:
            if watchers.ended:
                return Step(WatchStep.CANCEL, _NONE, self.after + 1, "shutting_down")
            current = service.revision
            now = loop.time()
            if self.after >= current:
                self.live = True
                remaining = self._last_sent + limits.heartbeat_seconds - now
                if remaining <= 0:
                    self._last_sent = now
                    return Step(WatchStep.PROGRESS, _NONE, self.after)
                hub = watchers.hub
                if hub is None:  # closed under us
                    return Step(WatchStep.CANCEL, _NONE, self.after + 1, "shutting_down")
                await hub.wait(remaining)
                continue
            if self.live and current - self.after > limits.max_lag_events:
                return Step(WatchStep.CANCEL, _NONE, self.after + 1, "slow_consumer")
            try:
                changes = history.changes_after(self.after, _WATCH_BATCH)
            except HistoryCompactedError:
                step = await self._from_log(current)
                if step is not None:
                    return step
            else:
                self.after = changes[-1][0]
                events = events_from_changes(changes, self.selector)
                if events:
                    self._last_sent = now
                    return Step(WatchStep.EVENTS, events)
            if now - self._last_sent >= limits.heartbeat_seconds:
                self._last_sent = now
                return Step(WatchStep.PROGRESS, _NONE, self.after)
            await asyncio.sleep(0)  # a long stretch of others' changes: let the loop breathe between batches

    async def _from_log(self, current: int) -> Step | None:
        """Read on from the log's own history; None if this batch held nothing for us."""
        log = self._service.log
        if not isinstance(log, EventHistory):
            return Step(WatchStep.CANCEL, _NONE, self.after + 1, "slow_consumer" if self.live else "history_compacted")
        try:
            events = await log.events_after(self.after, current, _WATCH_BATCH)
        except LogError:
            return Step(WatchStep.CANCEL, _NONE, self.after + 1, "log_unavailable")
        if not events or events[0].sequence != self.after + 1:  # the log's history has a hole here
            return Step(WatchStep.CANCEL, _NONE, self.after + 1, "history_compacted")
        self.after = events[-1].sequence
        found = events_from_log(events, self.selector)
        if found:
            self._last_sent = asyncio.get_running_loop().time()
            return Step(WatchStep.EVENTS, found)
        return None

    @property
    def last(self) -> bool:
        """No other watch stream is open: what was kept for sharing among watchers can go."""
        hub = self._watchers.hub
        return hub is None or len(hub.watches) <= (self in hub.watches)

    def close(self) -> None:
        """The stream ended: stop counting it."""
        if self.closed:
            return
        self.closed = True
        self._watchers.release(self)


class Watchers:
    """The watch streams and long polls of one replica: the service owns one and hands it out.

    ``hub`` is set while anyone watches or waits (``Service.apply`` checks only that);
    ``ended`` once :meth:`end` ran (shutdown).
    """

    __slots__ = ("ended", "hub", "replica", "settings")

    def __init__(self, replica: Replica, settings: WatchSettings | None = None) -> None:
        self.replica = replica
        self.settings = settings or WatchSettings()
        self.hub: Hub | None = None
        self.ended = False

    @property
    def count(self) -> int:
        """Open watch streams."""
        return len(self.hub.watches) if self.hub is not None else 0

    def _hub(self) -> Hub:
        hub = self.hub
        if hub is None:
            hub = self.hub = Hub(self.replica)
        return hub

    def open(self, selector: Selector, after: int, by: Principal | None = None) -> Watch:
        """See :meth:`Service.watch <tuco.service.Service.watch>`."""
        service = self.replica
        if after > service.revision:
            raise RevisionAheadError(after, service.revision)
        hub = self.hub
        settings = self.settings
        if hub is not None and len(hub.watches) >= settings.max_watchers:
            raise TooManyWatchersError(f"{settings.max_watchers} watch streams are open; retry later")
        if by is not None and not by.admin and hub is not None:
            share = settings.watcher_share
            if sum(1 for watch in hub.watches if watch.owner == by.name) >= share:
                raise WatcherShareError(
                    f"this credential holds {share} watch streams, its share of TUCO_WATCH_MAX_WATCHERS "
                    "(TUCO_WATCH_MAX_WATCHERS_PER_PRINCIPAL); close one first"
                )
        oldest = service.store.history.oldest_revision
        if after < oldest and not isinstance(service.log, EventHistory):
            raise HistoryCompactedError(oldest)
        watch = Watch(self, selector, after, by.name if by is not None else "")
        self._hub().watches.add(watch)
        return watch

    def changed_since(self, key: str, revision: int) -> bool:
        """Whether ``key`` changed at ``revision`` or later (a DELETE too), as far as memory can tell."""
        service = self.replica
        store = service.store
        if store.mod_revision(key) >= revision:
            return True
        current = service.revision
        if revision > current:
            return False
        try:
            changes = store.history.changes_after(revision - 1, current - revision + 1)
        except HistoryCompactedError:
            return True  # cannot tell any more: answer with the current state
        return any(change[2] == key for change in changes)

    async def wait_for_change(self, key: str, revision: int, timeout: float) -> None:
        """See :meth:`Service.wait_for_change <tuco.service.Service.wait_for_change>`."""
        current = self.replica.revision
        if revision - 1 > current:
            raise RevisionAheadError(revision - 1, current)
        if self.ended or self.changed_since(key, revision):
            return
        hub = self._hub()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (revision, future)
        hub.key_waiters.setdefault(key, []).append(waiter)
        try:
            await asyncio.wait((future,), timeout=timeout)
        finally:
            waiting = hub.key_waiters.get(key)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del hub.key_waiters[key]
            self.release()

    def release(self, watch: Watch | None = None) -> None:
        """Stop counting ``watch`` (if given); drop the hub once nobody watches or waits."""
        hub = self.hub
        if hub is None:
            return
        if watch is not None:
            hub.watches.discard(watch)
        if hub.idle:
            self.hub = None  # apply does nothing more for watchers

    def end(self) -> None:
        """End every watch stream and long poll now (shutdown)."""
        self.ended = True
        if self.hub is not None:
            self.hub.end()
