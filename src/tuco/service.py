"""The application layer: the store, the log and their lifecycle, and the operations every front end offers.

HTTP (native and ASGI) and the runtime call :class:`Service`; nothing here
knows HTTP, and nothing here names a concrete log (:mod:`tuco.assembly` turns
settings into one). The service is the :class:`~tuco.ports.CommitSink` the log
runs with: every committed event reaches :meth:`Service.apply` once, in order,
which is where changes will also fan out to watchers.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

import structlog

from tuco.core.events import Entry, Event, Precondition
from tuco.core.store import DEFAULT_HISTORY_BYTES, Page, Store
from tuco.core.watch import Selector, WatchEvent, events_from_changes, events_from_log
from tuco.errors import (
    HistoryCompactedError,
    InvalidKeyError,
    KeyTooLongError,
    LogError,
    TooManyWatchersError,
    ValueTooLargeError,
)
from tuco.observability import Metrics
from tuco.ports import EventHistory, TransactionLog

__all__ = ["Limits", "Phase", "ReplayStats", "Service", "Step", "Watch", "WatchSettings", "WatchStep"]

_logger = structlog.get_logger("tuco")
_PROGRESS_EVERY = 5.0  # seconds between replay_progress lines
# Loop turns given away after each replayed batch. A health probe on a new
# connection needs several (accept, read, write), and a batch can take a good
# fraction of a second, so one turn per batch would let a probe wait for three
# batches. An idle turn costs microseconds; a batch holds many thousand events.
_TURNS_PER_BATCH = 4


class Phase(enum.Enum):
    """Where the process is in its life; drives ``/readyz`` and key requests."""

    STARTING = "starting"
    SERVING = "serving"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes a client may send."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 1 << 20
    max_buffered_bytes: int = 64 << 20
    """Bodies being received, all requests together (the ASGI front end; the native server has its own)."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """How long rebuilding the state took."""

    events: int
    keys: int
    seconds: float

    @property
    def events_per_second(self) -> int:
        return int(self.events / self.seconds) if self.seconds > 0 else self.events


class Service:
    """Store and log with their lifecycle (replay, serve, close) and the key-value operations.

    ``get(key)`` returns the key's :class:`~tuco.core.events.Entry` from this
    replica's store (raises NoSuchKeyError); it is the store's lookup itself.
    """

    def __init__(
        self,
        log: TransactionLog,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        *,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        watch_settings: WatchSettings | None = None,
    ) -> None:
        self.store = Store(history_bytes=history_bytes)
        self.watch_settings = watch_settings or WatchSettings()
        self._watched: _Hub | None = None  # set while anyone watches: apply's one check
        self._hub: _Hub | None = None
        self._watches_ended = False
        self.log = log
        self.limits = limits or Limits()
        self.metrics = metrics
        self.phase = Phase.STARTING
        # Reads are the hot path: get is the store's own lookup, not a method calling it.
        self.get: Callable[[str], Entry] = self.store.entry
        if metrics is not None:
            metrics.gauge("tuco_keys", "keys in the store", lambda: len(self.store))
            metrics.gauge("tuco_last_sequence", "last event applied", lambda: self.store.last_sequence)
            metrics.gauge("tuco_ready", "1 when serving and the log takes writes", lambda: float(self.ready))
            metrics.gauge("tuco_watchers", "open watch streams", lambda: self.watch_count)

    @property
    def ready(self) -> bool:
        """Replay finished and the log takes writes."""
        return self.phase is Phase.SERVING and self.log.failure is None

    @property
    def revision(self) -> int:
        """The store's revision: the sequence of the last event applied."""
        return self.store.last_sequence

    # -- CommitSink -------------------------------------------------------------

    def apply(self, event: Event) -> object:
        """Apply one committed event (this replica's or another's) to the store, and wake its watchers."""
        applied = self.store.apply(event)
        if self._watched is not None:
            self._watched.changed()
        return applied

    def mod_revision(self, key: str) -> int:
        """The key's mod_revision in what was applied so far (0: absent)."""
        return self.store.mod_revision(key)

    # -- operations ---------------------------------------------------------------

    async def consistent_get(self, key: str) -> Entry:
        """The key as of every write any replica acknowledged before the call."""
        await self.log.catch_up()
        return self.store.entry(key)

    def put(self, key: str, value: bytes, precondition: Precondition | None = None) -> Awaitable[Event]:
        """Store ``value`` under ``key`` if ``precondition`` holds; await the result for the event.

        Raises the InvalidRequestError for a key or value over the limits at once;
        the awaitable raises PreconditionFailedError or a LogError.
        """
        limits = self.limits
        if not key:
            raise InvalidKeyError("the key is empty")
        # A key of n characters has at most 4n UTF-8 bytes: most keys need no encoding to be checked.
        if len(key) * 4 > limits.max_key_bytes and (size := len(key.encode())) > limits.max_key_bytes:
            raise KeyTooLongError(f"the key is {size} bytes; the limit is {limits.max_key_bytes}")
        if len(value) > limits.max_value_bytes:
            raise ValueTooLargeError(f"the value is over the {limits.max_value_bytes}-byte limit")
        return self.log.write_put(key, value, precondition)

    def delete(self, key: str, precondition: Precondition | None = None) -> Awaitable[Event]:
        """Record that ``key`` is deleted if ``precondition`` holds (deleting an absent key is no error)."""
        return self.log.write_delete(key, precondition)

    def page(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        """A page of the keys under ``prefix`` at ``revision`` (None: now); raises HistoryCompactedError."""
        return self.store.page(prefix, after=after, limit=limit, revision=revision)

    async def catch_up(self) -> None:
        """Make every event committed anywhere visible here (a revision another replica served)."""
        await self.log.catch_up()

    # -- watching -----------------------------------------------------------------

    def watch(self, selector: Selector, after: int) -> Watch:
        """A cursor for the changes ``selector`` matches after revision ``after``; close it when done.

        Raises TooManyWatchersError over the cap, HistoryCompactedError if the
        changes after ``after`` are neither in memory nor readable from the log.
        """
        return _watch(self, selector, after)

    def wait_for_change(self, key: str, revision: int, timeout: float) -> Awaitable[None]:
        """Until ``key`` changed at ``revision`` or later (or ``timeout`` seconds, or shutdown); no polling."""
        return _wait_for_change(self, key, revision, timeout)

    def changed_since(self, key: str, revision: int) -> bool:
        """Whether ``key`` changed (a DELETE too) at ``revision`` or later, as far as memory can tell."""
        return _changed_since(self, key, revision)

    @property
    def reads_back_history(self) -> bool:
        """Whether the log can serve watches older than memory (:class:`~tuco.ports.EventHistory`)."""
        return isinstance(self.log, EventHistory)

    def end_watches(self) -> None:
        """End every watch stream and long poll now (shutdown); they do not hold the grace period."""
        _end_watches(self)

    @property
    def watch_count(self) -> int:
        """Open watch streams."""
        return _watch_count(self)

    def _release_hub(self, watch: Watch | None = None) -> None:
        _release_hub(self, watch)

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> ReplayStats:
        """Replay the log into the store, then start writing; the service turns ready."""
        started = time.perf_counter()
        apply_batch = self.store.apply_batch
        events = 0
        # Replay allocates millions of short-lived event tuples and nothing cyclic;
        # the cyclic collector would only rescan them (about a fifth of replay time).
        collecting = gc.isenabled()
        gc.disable()
        next_report = started + _PROGRESS_EVERY
        try:
            async for batch in self.log.read_events():
                apply_batch(batch)
                events += len(batch)
                # A file log's batches come without any await: give the loop its turns, so /healthz
                # and /readyz answer during a long replay instead of a liveness probe killing us.
                for _ in range(_TURNS_PER_BATCH):
                    await asyncio.sleep(0)
                if (now := time.perf_counter()) >= next_report:  # long replays show they are moving
                    next_report = now + _PROGRESS_EVERY
                    rate = int(events / (now - started))
                    _logger.info("replay_progress", events=events, keys=len(self.store), events_per_second=rate)
        finally:
            if collecting:
                gc.enable()
        await self.log.run(self)
        stats = ReplayStats(events, len(self.store), round(time.perf_counter() - started, 3))
        self.phase = Phase.SERVING
        return stats

    async def aclose(self) -> None:
        """Stop serving keys and close the log after committing what is queued."""
        self.phase = Phase.STOPPING
        self.end_watches()
        await self.log.aclose()


# -- watching ---------------------------------------------------------------------
#
# A watch is a cursor (the last revision it examined) over the store's History,
# not a queue: a change is kept once, in History, however many watch it. apply()
# only tells the hub that something changed (one attribute check while nobody
# watches, one flag and at most one call_soon per loop turn while anyone does);
# the hub wakes every waiting watch at once, and each reads on from its cursor
# when its stream asks for more. A writer never waits for a watcher.

_WATCH_BATCH = 1000  # changes examined per step; a step's events go out as one chunk


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """Bounds on watching and who may watch from a browser (``TUCO_WATCH_*``, ``TUCO_CORS_ALLOW_ORIGINS``)."""

    max_watchers: int = 1000
    """Open watch streams at once; more get 503 too_many_watchers."""
    max_lag_events: int = 100_000
    """A live watch this many revisions behind the store is ended with a resume point."""
    heartbeat_seconds: float = 15.0
    """An idle stream gets a heartbeat comment and a progress event this often."""
    allow_origins: frozenset[str] = frozenset()
    """Browser origins (``Origin`` header values) whose pages may open a watch; ``*`` for any."""


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


class _Hub:
    """Who waits for changes: watch streams (woken together) and long polls (woken per key)."""

    __slots__ = ("_changed", "_loop", "_scheduled", "_seen", "_service", "key_waiters", "watches")

    def __init__(self, service: Service) -> None:
        self._service = service
        self._loop = asyncio.get_running_loop()
        self._changed: asyncio.Future[None] | None = None
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
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)
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

    async def wait(self, timeout: float) -> None:
        """Until the next change (or shutdown), at most ``timeout`` seconds; never cancels the shared future."""
        changed = self._changed
        if changed is None:
            changed = self._changed = self._loop.create_future()
        await asyncio.wait((changed,), timeout=timeout)

    def end(self) -> None:
        """Wake everyone now: the service is stopping."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)
        for key in list(self.key_waiters):
            self._wake_key(key, None)

    @property
    def idle(self) -> bool:
        return not self.watches and not self.key_waiters


class Watch:
    """One watch stream's cursor: ``after`` is the last revision examined; changes after it are still to come.

    ``live`` is true from the start when the watch starts within ``max_lag_events``
    of the store's revision, else once the cursor first reaches it; a live
    cursor more than ``max_lag_events`` behind is ended (a slow consumer).
    Catching up from an old revision is paced by the reader and is never cut
    for lag, but once memory dropped its place it reads from the log, if the log
    can (:class:`~tuco.ports.EventHistory`), or ends.
    """

    __slots__ = ("_last_sent", "_service", "after", "closed", "live", "selector")

    def __init__(self, service: Service, selector: Selector, after: int) -> None:
        self._service = service
        self.selector = selector
        self.after = after
        # A watch that starts within the lag bound is live at once; one further back is catching up until it
        # first reaches the store's revision (else one that never caught up could never be cut).
        self.live = service.revision - after <= service.watch_settings.max_lag_events
        self.closed = False
        self._last_sent = asyncio.get_running_loop().time()

    async def next(self) -> Step:
        """The next events, or a progress revision when idle for a heartbeat, or why and where it ends."""
        service = self._service
        limits = service.watch_settings
        history = service.store.history
        loop = asyncio.get_running_loop()
        while True:
            if service._watches_ended:
                return Step(WatchStep.CANCEL, _NONE, self.after + 1, "shutting_down")
            current = service.revision
            now = loop.time()
            if self.after >= current:
                self.live = True
                remaining = self._last_sent + limits.heartbeat_seconds - now
                if remaining <= 0:
                    self._last_sent = now
                    return Step(WatchStep.PROGRESS, _NONE, self.after)
                hub = service._hub
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

    def close(self) -> None:
        """The stream ended: stop counting it."""
        if self.closed:
            return
        self.closed = True
        self._service._release_hub(watch=self)


def _hub_of(service: Service) -> _Hub:
    hub = service._hub
    if hub is None:
        hub = service._hub = _Hub(service)
    service._watched = hub
    return hub


def _watch(service: Service, selector: Selector, after: int) -> Watch:
    """See :meth:`Service.watch`."""
    hub = service._hub
    if hub is not None and len(hub.watches) >= service.watch_settings.max_watchers:
        raise TooManyWatchersError(f"{service.watch_settings.max_watchers} watch streams are open; retry later")
    oldest = service.store.history.oldest_revision
    if after < oldest and not isinstance(service.log, EventHistory):
        raise HistoryCompactedError(oldest)
    watch = Watch(service, selector, after)
    _hub_of(service).watches.add(watch)
    return watch


def _changed_since(service: Service, key: str, revision: int) -> bool:
    """Whether ``key`` changed at ``revision`` or later (a DELETE too), as far as memory can tell."""
    if service.store.mod_revision(key) >= revision:
        return True
    if revision > service.revision:
        return False
    try:
        changes = service.store.history.changes_after(revision - 1, service.revision - revision + 1)
    except HistoryCompactedError:
        return True  # cannot tell any more: answer with the current state
    return any(change[2] == key for change in changes)


async def _wait_for_change(service: Service, key: str, revision: int, timeout: float) -> None:
    """See :meth:`Service.wait_for_change`."""
    if service._watches_ended or _changed_since(service, key, revision):
        return
    hub = _hub_of(service)
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
        service._release_hub()


def _release_hub(service: Service, watch: Watch | None = None) -> None:
    hub = service._hub
    if hub is None:
        return
    if watch is not None:
        hub.watches.discard(watch)
    if hub.idle:
        service._watched = None  # apply does nothing more for watchers
        service._hub = None


def _end_watches(service: Service) -> None:
    service._watches_ended = True
    if service._hub is not None:
        service._hub.end()


def _watch_count(service: Service) -> int:
    return len(service._hub.watches) if service._hub is not None else 0
