"""The application layer: the store, the log and their lifecycle, and the operations every front end offers.

HTTP (native and ASGI) and the runtime call :class:`Service`; nothing here
knows HTTP, and nothing here names a concrete log (:mod:`tuco.assembly` turns
settings into one). The service is the :class:`~tuco.ports.CommitSink` the log
runs with: every committed event reaches :meth:`Service.apply` once, in order,
which is where changes will also fan out to watchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import gc
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import structlog

from tuco.core.events import Entry, Event, EventType, Expiry, Precondition
from tuco.core.leases import Due, Lease, may_use
from tuco.core.store import DEFAULT_HISTORY_BYTES, ENTRY_BYTES, ExpiringEntry, Page, Store
from tuco.core.tokens import (
    MAX_TOKENS,
    Access,
    Grant,
    Principal,
    TokenRecord,
    Tokens,
    digest,
    encode_record,
    format_token,
)
from tuco.core.watch import Selector
from tuco.errors import (
    ForbiddenError,
    InvalidKeyError,
    InvalidParameterError,
    KeyTooLongError,
    LeaseLimitError,
    LeaseNotFoundError,
    LogClosedError,
    LogError,
    NoSuchKeyError,
    PreconditionFailedError,
    StoreFullError,
    TokenLimitError,
    TokenNotFoundError,
    TucoError,
    ValueTooLargeError,
)
from tuco.observability import Family, Metrics, counter_family, gauge_family, histogram_family
from tuco.ports import EventHistory, Read, TransactionLog
from tuco.watchers import Hub, Watch, WatchSettings, changed_since, end_watches, open_watch, wait_for_change

__all__ = ["Limits", "Phase", "ReplayStats", "Service"]

_logger = structlog.get_logger("tuco")
_PROGRESS_EVERY = 5.0  # seconds between replay_progress lines
# Loop turns given away after each replayed batch. A health probe on a new
# connection needs several (accept, read, write), and a batch can take a good
# fraction of a second, so one turn per batch would let a probe wait for three
# batches. An idle turn costs microseconds; a batch holds many thousand events.
_TURNS_PER_BATCH = 4
# The expirer looks at the deadline heap at least this often (seconds): a deadline is met within about this
# plus one commit. A look is a heap peek; new deadlines need no wake-up.
_EXPIRY_POLL = 0.05
_EXPIRY_RETRY_MS = 250  # an expiry write that did not happen (log down, decided not yet expired) is retried after
# Deadlines the expirer takes per round, and writes it hands the log at once: each slice is one group-committed
# batch (one log write or one database call), and between two the loop serves requests. 100,000 leases ending
# at once are twenty rounds, not one pause of seconds.
_EXPIRY_SLICE = 5000


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
    max_ttl_ms: int = 365 * 86_400_000
    """Longest time to live of a key or a lease."""
    max_leases: int = 10_000
    max_keys_per_lease: int = 10_000
    max_leases_per_principal: int = 0
    """Live leases one principal may hold (admins excepted); 0: a quarter of ``max_leases``."""

    @property
    def lease_share(self) -> int:
        """How many leases one principal may hold: the setting, or a quarter of the cap (at least 1)."""
        return self.max_leases_per_principal or max(1, self.max_leases // 4)

    max_store_bytes: int = 1 << 30
    """Bytes the store may hold (:attr:`~tuco.core.store.Store.bytes`); 0: no bound."""
    max_store_keys: int = 10_000_000
    """Keys the store may hold; 0: no bound."""


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """How long rebuilding the state took."""

    events: int
    keys: int
    seconds: float

    @property
    def events_per_second(self) -> int:
        return int(self.events / self.seconds) if self.seconds > 0 else self.events


def _room(limits: Limits) -> int:
    """The store size below which a write of N more bytes (plus an entry) passes both bounds without a look-up.

    Every key costs at least ENTRY_BYTES + 1 bytes, so a store under ``max_store_keys`` times that
    holds fewer keys than the bound.
    """
    bounds = [limits.max_store_bytes, limits.max_store_keys * (ENTRY_BYTES + 1) - 1]
    return min((bound for bound in bounds if bound > 0), default=1 << 62) - ENTRY_BYTES


class Service:
    """Store and log with their lifecycle (replay, serve, close) and the key-value operations.

    ``get(key)`` returns the key's :class:`~tuco.core.events.Entry` from this
    replica's store (raises NoSuchKeyError, also for a key past its deadline);
    it is the store's lookup itself, so for a live key with a deadline it raises
    :class:`~tuco.core.store.ExpiringEntry` carrying the entry and its deadline.
    ``find(key)`` is the HTTP read path's lookup: the entry's plain tuple, with
    no copy and no exception, for a key without a deadline; None otherwise
    (absent, or expiring: then ask ``get``).

    ``reads_through`` is False: every key is in memory. A read-through service
    (:mod:`tuco.cache`) sets it, and its ``find`` misses must be answered by
    awaiting :meth:`fetch`; the HTTP layer picks its read path once, at start.
    """

    reads_through = False
    runs_expirer = True

    def __init__(
        self,
        log: TransactionLog,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        *,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        watch_settings: WatchSettings | None = None,
        access: Access | None = None,
    ) -> None:
        self.store = Store(history_bytes=history_bytes)
        self.access = access or Access()
        """Whether requests must authenticate (the HTTP front ends pick their handler by it)."""
        self.watch_settings = watch_settings or WatchSettings()
        self.hub: Hub | None = None  # set while anyone watches or waits: apply's one check
        self.watches_ended = False
        self.log = log
        self.limits = limits or Limits()
        self.metrics = metrics
        self.phase = Phase.STARTING
        # Reads are the hot path: get is the store's own lookup, not a method calling it.
        self.find: Callable[[str], tuple[bytes, int, int, int] | None] = self.store.find
        self.get: Callable[[str], Entry] = self.store.lookup
        self.store.now = log.now_ms  # expiry is decided by the log's clock, and reads hide what it expired
        self._expirer: asyncio.Task[None] | None = None
        # Writes in flight that a cap must count before the log decides them (reserved before the write goes
        # out, released the moment it is decided): grants, in all and per principal; keys being attached,
        # per lease; tokens being created. Without them concurrent requests all pass a check of the store.
        self._granting = 0
        self._granting_by: dict[str, int] = {}
        self._attaching: dict[int, dict[str, int]] = {}
        self._creating_tokens = 0
        self.expired_keys = 0
        """Keys this replica deleted because their deadline passed (another replica may have deleted others)."""
        self.store_refusals = 0
        """Writes refused because the store is at its bound (TUCO_MAX_STORE_BYTES or TUCO_MAX_STORE_KEYS)."""
        # A read-through store holds only the keys with a deadline: the bound is for a full copy in memory.
        self._bounded = not self.reads_through and bool(self.limits.max_store_bytes or self.limits.max_store_keys)
        self._room = _room(self.limits)
        self._refused_at: tuple[int, int] | None = None  # the store's (bytes, keys) when a write was last refused
        self.expiry_rounds = 0
        """Rounds the expirer finished (a look at the deadlines, and the writes of what was due): it is alive.

        A round that starts after a clock reading has seen that time; "nothing expired" is known once two more ended.
        """
        if metrics is not None:
            metrics.gauge("tuco_keys", "keys in the store", lambda: len(self.store))
            metrics.gauge("tuco_last_sequence", "last event applied", lambda: self.store.last_sequence)
            metrics.gauge("tuco_ready", "1 when serving and the log takes writes", lambda: float(self.ready))
            metrics.gauge("tuco_watchers", "open watch streams", lambda: self.watch_count)
            metrics.gauge("tuco_leases", "live leases", lambda: len(self.store.leases))
            metrics.gauge("tuco_tokens", "tokens (revoked ones excluded)", lambda: len(self.store.tokens))
            metrics.counter(
                "tuco_keys_expired", "keys this replica deleted at their deadline", lambda: self.expired_keys
            )
            metrics.counter(
                "tuco_expiry_rounds",
                "rounds the expirer finished (it looks at the deadlines every 50 ms)",
                lambda: self.expiry_rounds,
            )
            if not self.reads_through:
                metrics.gauge("tuco_store_bytes", "bytes the store holds (keys, values, 240 per key)", self._bytes)
                metrics.gauge(
                    "tuco_store_max_bytes",
                    "TUCO_MAX_STORE_BYTES (0: no bound)",
                    lambda: float(self.limits.max_store_bytes),
                )
                metrics.gauge(
                    "tuco_store_max_keys",
                    "TUCO_MAX_STORE_KEYS (0: no bound)",
                    lambda: float(self.limits.max_store_keys),
                )
                metrics.counter(
                    "tuco_store_full_refusals", "writes refused: the store is at its bound", lambda: self.store_refusals
                )
            metrics.collect(self._log_families)

    def _bytes(self) -> float:
        return float(self.store.bytes)

    def store_status(self) -> dict[str, object] | None:
        """The store's size against its bounds, for /readyz (None for a read-through store, which holds no copy).

        ``full``: writes are being refused: one was, and the store has not shrunk below its size then
        (or not even an empty new key fits).
        """
        if self.reads_through:
            return None
        store, limits = self.store, self.limits
        keys = len(store)
        refused = self._refused_at
        full = (
            (0 < limits.max_store_bytes < store.bytes + ENTRY_BYTES + 1)
            or (0 < limits.max_store_keys <= keys)
            or (refused is not None and store.bytes >= refused[0] and keys >= refused[1])
        )
        return {
            "bytes": store.bytes,
            "max_bytes": limits.max_store_bytes,
            "keys": keys,
            "max_keys": limits.max_store_keys,
            "full": full,
        }

    def _log_families(self) -> Iterator[Family]:
        """The log's counts and replication lag as metric families (at scrape time)."""
        counted = self.log.statistics()
        yield histogram_family(
            "tuco_log_commit_batch_size", "writes per committed batch", (), [((), counted.batch_sizes)]
        )
        yield histogram_family(
            "tuco_log_commit_duration_seconds",
            "time from a batch handed to the log to its commit (write and sync, or the database transaction)",
            (),
            [((), counted.commit_seconds)],
        )
        if counted.sync_seconds is not None:
            yield histogram_family(
                "tuco_log_sync_duration_seconds", "each fdatasync of the log file", (), [((), counted.sync_seconds)]
            )
        yield counter_family("tuco_log_compactions", "log rewrites finished", counted.compactions)
        described = self.log.describe()
        lag_events, lag_seconds = described.get("lag_events", 0), described.get("lag_seconds", 0.0)
        yield gauge_family(
            "tuco_replication_lag_events",
            "events other replicas committed that this one has not applied yet (0 for a single writer)",
            float(lag_events) if isinstance(lag_events, int | float) else 0.0,
        )
        yield gauge_family(
            "tuco_replication_lag_seconds",
            "commit-time distance from the newest event seen to the last one applied",
            float(lag_seconds) if isinstance(lag_seconds, int | float) else 0.0,
        )

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
        if self.hub is not None:
            self.hub.changed()
        return applied

    def mod_revision(self, key: str) -> int:
        """The key's mod_revision in what was applied so far (0: absent)."""
        return self.store.mod_revision(key)

    def key_expiry(self, key: str) -> int | None:
        """When the key expires in what was applied (Unix ms), None without a deadline."""
        return self.store.key_expiry(key)

    def lease(self, id: int) -> tuple[int, int] | None:
        """The applied lease's ``(ttl, deadline)``, None if there is none."""
        return self.store.lease(id)

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
        self._check_write(key, value)
        return self.log.write_put(key, value, precondition)

    def delete(self, key: str, precondition: Precondition | None = None) -> Awaitable[Event]:
        """Record that ``key`` is deleted if ``precondition`` holds (deleting an absent key is no error)."""
        return self.log.write_delete(key, precondition)

    async def fetch(self, key: str) -> Read:
        """The key with when it expires, for a read path that may wait (here: from memory, at once)."""
        try:
            return Read(self.store.lookup(key), 0, self.revision)
        except ExpiringEntry as expiring:
            return Read(expiring.entry, expiring.expires_at, self.revision)
        except NoSuchKeyError:
            return Read(None, 0, self.revision)

    async def read_consistent(self, key: str) -> Read:
        """:meth:`fetch` as of every write any replica acknowledged before the call."""
        await self.log.catch_up()
        return await self.fetch(key)

    async def page_through(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        """:meth:`page` for a read path that may wait."""
        return self.page(prefix, after=after, limit=limit, revision=revision)

    def page(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        """A page of the keys under ``prefix`` at ``revision`` (None: now); raises HistoryCompactedError."""
        return self.store.page(prefix, after=after, limit=limit, revision=revision)

    async def catch_up(self) -> None:
        """Make every event committed anywhere visible here (a revision another replica served)."""
        await self.log.catch_up()

    # -- watching -----------------------------------------------------------------

    def watch(self, selector: Selector, after: int, by: Principal | None = None) -> Watch:
        """A cursor for the changes ``selector`` matches after revision ``after``, opened by ``by``; close it when done.

        Raises TooManyWatchersError over the cap (WatcherShareError over ``by``'s
        share of it), HistoryCompactedError if the changes after ``after`` are
        neither in memory nor readable from the log, RevisionAheadError if
        ``after`` is past the store's revision (catch up first).
        """
        return open_watch(self, selector, after, by)

    def wait_for_change(self, key: str, revision: int, timeout: float) -> Awaitable[None]:
        """Until ``key`` changed at ``revision`` or later (or ``timeout`` seconds, or shutdown); no polling.

        Raises RevisionAheadError if ``revision`` - 1 is past the store's revision (catch up first).
        """
        return wait_for_change(self, key, revision, timeout)

    def changed_since(self, key: str, revision: int) -> bool:
        """Whether ``key`` changed (a DELETE too) at ``revision`` or later, as far as memory can tell."""
        return changed_since(self, key, revision)

    @property
    def reads_back_history(self) -> bool:
        """Whether the log can serve watches older than memory (:class:`~tuco.ports.EventHistory`)."""
        return isinstance(self.log, EventHistory)

    def end_watches(self) -> None:
        """End every watch stream and long poll now (shutdown); they do not hold the grace period."""
        end_watches(self)

    @property
    def watch_count(self) -> int:
        """Open watch streams."""
        return len(self.hub.watches) if self.hub is not None else 0

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
        if self.runs_expirer:
            self._expirer = asyncio.get_running_loop().create_task(self._expire_forever(), name="tuco-expirer")
        return stats

    async def aclose(self) -> None:
        """Stop serving keys and close the log after committing what is queued."""
        self.phase = Phase.STOPPING
        self.end_watches()
        if self._expirer is not None:
            self._expirer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expirer
            self._expirer = None
        await self.log.aclose()

    # -- expiring keys and leases -------------------------------------------------

    def put_expiring(
        self,
        key: str,
        value: bytes,
        precondition: Precondition | None,
        *,
        ttl_ms: int = 0,
        lease: int = 0,
        by: Principal | None = None,
    ) -> Awaitable[Event]:
        """:meth:`put` with a time to live (the log's clock sets the deadline) or attached to a lease.

        Raises LeaseLimitError for a lease that holds TUCO_MAX_KEYS_PER_LEASE
        keys already, LeaseNotFoundError for a lease that is not ``by``'s (see
        :meth:`owned_lease`); the awaitable raises LeaseNotFoundError for a lease
        that does not exist (or has expired) when the log decides.
        """
        self._check_write(key, value)
        if ttl_ms:
            self._check_ttl(ttl_ms)
        expiry = Expiry(ttl=ttl_ms, lease=lease)
        if not lease:
            return self.log.write_expiring(EventType.PUT, key, value, precondition, expiry)
        write = functools.partial(self.log.write_expiring, EventType.PUT, key, value, precondition, expiry)
        found = self.store.leases.get(lease)
        if found is None:
            if by is not None:
                return self._when_owned(lease, by, lambda known: self._attach(known, key, write))
            return write()  # the log decides: no such lease (it may be another replica's, not applied here yet)
        self._check_owner(found, by)
        return self._attach(found, key, write)

    def _attach(self, lease: Lease, key: str, write: Callable[[], Awaitable[Event]]) -> Awaitable[Event]:
        """``write()`` of ``key`` onto ``lease`` within TUCO_MAX_KEYS_PER_LEASE, counting attaches in flight."""
        pending = self._attaching.get(lease.id)
        if key not in lease.keys and (pending is None or key not in pending):
            held = len(lease.keys) + (sum(1 for k in pending if k not in lease.keys) if pending else 0)
            if held >= self.limits.max_keys_per_lease:
                raise LeaseLimitError(
                    f"the lease holds {self.limits.max_keys_per_lease} keys, the most one lease may hold "
                    "(TUCO_MAX_KEYS_PER_LEASE)"
                )
        if pending is None:
            pending = self._attaching[lease.id] = {}
        pending[key] = pending.get(key, 0) + 1

        def release() -> None:
            left = pending[key] - 1
            if left:
                pending[key] = left
                return
            del pending[key]
            if not pending and self._attaching.get(lease.id) is pending:
                del self._attaching[lease.id]

        return _reserved(write, release)

    def grant(self, ttl_ms: int, owner: Principal | None = None) -> Awaitable[Event]:
        """Grant a lease for ``ttl_ms`` owned by ``owner`` (None: nobody, authentication is off).

        The event's ``lease`` is its id, ``deadline`` its end unless kept alive. Raises LeaseLimitError
        at TUCO_MAX_LEASES, or at ``owner``'s share of it (admins have none), grants in flight included.
        """
        self._check_ttl(ttl_ms)
        limits = self.limits
        leases = self.store.leases
        if len(leases) + self._granting >= limits.max_leases:
            raise LeaseLimitError(
                f"{limits.max_leases} leases are live or being granted, the most this store keeps (TUCO_MAX_LEASES)"
            )
        name = owner.name if owner is not None and not owner.admin else ""
        if name:
            share = limits.lease_share
            if leases.owned_by(name) + self._granting_by.get(name, 0) >= share:
                raise LeaseLimitError(
                    f"this credential holds {share} leases, its share of TUCO_MAX_LEASES "
                    "(TUCO_MAX_LEASES_PER_PRINCIPAL); revoke one first"
                )
            self._granting_by[name] = self._granting_by.get(name, 0) + 1
        self._granting += 1

        def release() -> None:
            self._granting -= 1
            if name:
                left = self._granting_by[name] - 1
                if left:
                    self._granting_by[name] = left
                else:
                    del self._granting_by[name]

        value = owner.name.encode("utf-8") if owner is not None else b""
        write = functools.partial(self.log.write_expiring, EventType.LEASE_GRANT, "", value, None, Expiry(ttl=ttl_ms))
        return _reserved(write, release)

    def owned_lease(self, id: int, by: Principal | None) -> Lease | None:
        """Lease ``id`` as ``by`` sees it: None if there is none or it is another principal's (admins see every one).

        ``by`` None (authentication off) sees every lease.
        """
        found = self.store.leases.get(id)
        if found is None or (by is not None and not may_use(found, by.name, by.admin)):
            return None
        return found

    def keepalive(self, lease: int, by: Principal | None = None) -> Awaitable[Event]:
        """Move the lease's deadline to its ttl from now; the awaitable raises LeaseNotFoundError if it is gone.

        Raises LeaseNotFoundError for a lease that is not ``by``'s.
        """
        write = functools.partial(
            self.log.write_expiring, EventType.LEASE_KEEPALIVE, "", b"", None, Expiry(lease=lease)
        )
        if by is not None:
            found = self.store.leases.get(lease)
            if found is None:
                return self._when_owned(lease, by, lambda _: write())
            self._check_owner(found, by)
        return write()

    async def _when_owned(self, lease: int, by: Principal, write: Callable[[Lease], Awaitable[Event]]) -> Event:
        """``write(lease)`` once lease ``lease``, unknown here, turned out ``by``'s after catching up with the log.

        A lease granted on another replica a moment ago is known here only then;
        its owner never changes, so checking it before the write is enough.
        """
        await self.log.catch_up()
        found = self.store.leases.get(lease)
        if found is None:
            raise LeaseNotFoundError(lease)
        self._check_owner(found, by)
        return await write(found)

    @staticmethod
    def _check_owner(lease: Lease, by: Principal | None) -> None:
        """LeaseNotFoundError unless ``by`` may use ``lease``: to everyone else it does not exist."""
        if by is not None and not may_use(lease, by.name, by.admin):
            raise LeaseNotFoundError(lease.id)

    async def revoke(
        self, lease: int, allowed: Callable[[str], bool] | None = None, by: Principal | None = None
    ) -> tuple[Event, int]:
        """Delete the lease's keys (each at the revision it has), then the lease; return its event and keys deleted.

        A key rewritten meanwhile is not deleted by its DELETE; if it is still
        on the lease when the lease goes, it expires at once (the expirer deletes it).
        Raises LeaseNotFoundError for a lease that is not ``by``'s (checked after
        catching up). With ``allowed``, every key attached (as known then) must
        pass it, else ForbiddenError and nothing is deleted.
        """
        await self.log.catch_up()  # the keys another replica attached are known here
        found = self.store.leases.get(lease)
        if found is None:
            raise LeaseNotFoundError(lease)
        self._check_owner(found, by)
        deleted = 0
        keys = sorted(found.keys)
        if allowed is not None and not all(allowed(key) for key in keys):
            raise ForbiddenError("the token has no write grant on every key of this lease")
        outcomes = await asyncio.gather(
            *(self.log.write_delete(key, Precondition(self.store.mod_revision(key))) for key in keys),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, Event):
                deleted += 1
            elif not isinstance(outcome, PreconditionFailedError):
                raise outcome
        event = await self.log.write_expiring(EventType.LEASE_REVOKE, "", b"", None, Expiry(lease=lease))
        return event, deleted

    # -- tokens -------------------------------------------------------------------

    async def create_token(
        self, description: str, grants: Sequence[Grant], *, expires_at: int = 0, cert: str = ""
    ) -> tuple[TokenRecord, str | None]:
        """Create a token (or, with ``cert``, grants for a certificate identity); return it and its secret token.

        The secret is made here and returned this once; the log keeps only its SHA-256.
        Raises TokenLimitError over MAX_TOKENS live tokens.
        """
        if len(self.store.tokens) + self._creating_tokens >= MAX_TOKENS:
            raise TokenLimitError(f"{MAX_TOKENS} tokens exist or are being created, the most this store keeps")
        id = secrets.token_hex(8)
        token = None
        sha256 = b""
        if not cert:
            secret = secrets.token_urlsafe(32)
            token = format_token(id, secret)
            sha256 = digest(secret.encode("ascii"))
        record = TokenRecord(id, description, tuple(grants), expires_at, sha256, cert)
        self._creating_tokens += 1

        def release() -> None:
            self._creating_tokens -= 1

        write = functools.partial(self.log.write_expiring, EventType.TOKEN_CREATE, id, encode_record(record), None)
        try:
            event = await _reserved(lambda: write(Expiry()), release)
        except LeaseNotFoundError:  # the database refused it: that id exists already (64 random bits: never)
            raise TokenLimitError("a token with that id exists; try again") from None
        return record._replace(created=event.sequence), token

    async def revoke_token(self, id: str) -> Event:
        """Revoke token ``id``; raises TokenNotFoundError if there is none."""
        if self.store.tokens.get(id) is None:
            await self.log.catch_up()  # created on another replica a moment ago?
            if self.store.tokens.get(id) is None:
                raise TokenNotFoundError(id)
        try:
            return await self.log.write_expiring(EventType.TOKEN_REVOKE, id, b"", None, Expiry())
        except LeaseNotFoundError:  # another replica revoked it first
            raise TokenNotFoundError(id) from None

    def _check_write(self, key: str, value: bytes) -> None:
        """The key and value limits of every PUT (raises the InvalidRequestError at once)."""
        limits = self.limits
        if not key:
            raise InvalidKeyError("the key is empty")
        # A key of n characters has at most 4n UTF-8 bytes: most keys need no encoding to be checked.
        if len(key) * 4 > limits.max_key_bytes and (size := len(key.encode())) > limits.max_key_bytes:
            raise KeyTooLongError(f"the key is {size} bytes; the limit is {limits.max_key_bytes}")
        if len(value) > limits.max_value_bytes:
            raise ValueTooLargeError(f"the value is over the {limits.max_value_bytes}-byte limit")
        # Far from both bounds (nearly always) no entry is looked up: 4 bytes per character covers any key's UTF-8.
        if self._bounded and self.store.bytes + 4 * len(key) + len(value) > self._room:
            self._check_room(key, value)

    def _check_room(self, key: str, value: bytes) -> None:
        """StoreFullError for a write that would take the store past a bound, checked against what was applied.

        A write that does not grow the store passes (a rewrite as long or shorter); writes already in
        flight are not counted, so concurrent ones can pass a bound by what the log holds queued.
        """
        store, limits = self.store, self.limits
        max_bytes = limits.max_store_bytes
        if max_bytes:
            growth = store.growth(key, value)
            if growth > 0 and store.bytes + growth > max_bytes:
                self.store_refusals += 1
                self._refused_at = (store.bytes, len(store))
                raise StoreFullError(
                    f"the store holds {store.bytes} bytes and this write would take it past its bound of "
                    f"{max_bytes} (TUCO_MAX_STORE_BYTES): delete keys, or raise the bound"
                )
        max_keys = limits.max_store_keys
        if max_keys and len(store) >= max_keys and key not in store:
            self.store_refusals += 1
            self._refused_at = (store.bytes, len(store))
            raise StoreFullError(
                f"the store holds {len(store)} keys, its bound (TUCO_MAX_STORE_KEYS): delete keys, or raise the bound"
            )

    def _check_ttl(self, ttl_ms: int) -> None:
        if not 1 <= ttl_ms <= self.limits.max_ttl_ms:
            raise InvalidParameterError(
                f"ttl must be from 1 ms to {self.limits.max_ttl_ms // 1000} s (TUCO_MAX_TTL_SECONDS)"
            )

    async def _expire_forever(self) -> None:
        """Write a DELETE for each key past its deadline, and a revoke for each expired lease, as they come due.

        Each write is conditional (the key's mod_revision, and its deadline by the
        log's clock), so replicas expiring one key together write one DELETE and a
        key rewritten or kept alive meanwhile stays. Never dies: a failure is logged and retried.
        """
        store = self.store
        now_ms = self.log.now_ms
        while True:
            try:
                now = now_ms()
                due = store.due(now, _EXPIRY_SLICE)
                if due:
                    await self._expire(due, now)
                self.expiry_rounds += 1
                upcoming = store.leases.next_due()
                wait = _EXPIRY_POLL if upcoming is None else min(_EXPIRY_POLL, max(0.0, (upcoming - now_ms()) / 1000))
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: say so, keep expiring
                _logger.exception("expirer_failed")
                await asyncio.sleep(1.0)

    async def _expire(self, due: Due, now: int) -> None:
        """Write the DELETEs of the due keys, then the revokes of the due leases, a slice at a time."""
        log = self.log
        expired = Expiry(expired=True)
        again: list[str] = []
        for part in _slices(due.keys):
            outcomes = await _outcomes(
                [log.write_expiring(EventType.DELETE, key, b"", Precondition(mod), expired) for key, mod in part]
            )
            again += [key for (key, _), outcome in zip(part, outcomes, strict=True) if not isinstance(outcome, Event)]
            self._note_failures(outcomes, "expiring keys")
        self.expired_keys += len(due.keys) - len(again)
        leases: list[int] = []
        for ids in _slices(due.leases):
            revoked = await _outcomes(
                [
                    log.write_expiring(EventType.LEASE_REVOKE, "", b"", None, Expiry(lease=id, expired=True))
                    for id in ids
                ]
            )
            leases += [id for id, outcome in zip(ids, revoked, strict=True) if not isinstance(outcome, Event)]
            self._note_failures(revoked, "expiring leases")
        if again or leases:
            store = self.store
            store.retry_later(again, leases, now + _EXPIRY_RETRY_MS)

    def _note_failures(self, outcomes: Sequence[object], doing: str) -> None:
        """Log the first unexpected failure of a round; refusals (another replica was first) are expected."""
        for outcome in outcomes:
            if isinstance(outcome, PreconditionFailedError | LeaseNotFoundError):
                continue
            if isinstance(outcome, LogClosedError):
                return
            if isinstance(outcome, TucoError):
                _logger.warning("expiry_write_failed", doing=doing, error=outcome.code)
                return
            if isinstance(outcome, BaseException):
                _logger.error("expiry_write_failed", doing=doing, error=repr(outcome))
                return

    # What the HTTP layer reads

    def leases_of(self, by: Principal | None) -> list[Lease]:
        """The live leases ``by`` may see (its own; every one for an admin, or with authentication off), by id."""
        now = self.log.now_ms()
        return sorted(
            (
                lease
                for lease in self.store.leases
                if lease.deadline > now and (by is None or may_use(lease, by.name, by.admin))
            ),
            key=lambda lease: lease.id,
        )

    def now_ms(self) -> int:
        """The log's clock (Unix ms), by which deadlines are decided."""
        return self.log.now_ms()

    @property
    def clock(self) -> Callable[[], int]:
        """The log's clock itself, for a caller that reads it per request (no call through the service)."""
        return self.log.now_ms

    @property
    def tokens(self) -> Tokens:
        """The live tokens (read-only use: creating and revoking go through the log)."""
        return self.store.tokens

    @property
    def log_failure(self) -> LogError | None:
        """Why the log takes no writes, if it takes none."""
        return self.log.failure

    def log_description(self) -> Mapping[str, object]:
        """The log's own description of its state (for /readyz, filtered there)."""
        return self.log.describe()

    def expires_at(self, key: str) -> int:
        """The key's deadline (Unix ms) in what was applied; 0 without one."""
        return self.store.expires_at(key)

    @property
    def oldest_revision(self) -> int:
        """The oldest revision the in-memory history still holds."""
        return self.store.history.oldest_revision


def _reserved(write: Callable[[], Awaitable[Event]], release: Callable[[], None]) -> Awaitable[Event]:
    """``write()``, with ``release`` called exactly once: when the log decided it, or at once if it cannot start.

    The group commit's writes take a callback that runs in the pass that applies their batch, so a slot
    is handed back in the same step as the store counts what took it: never counted twice, never lost.
    """
    try:
        written = write()
    except BaseException:
        release()
        raise
    if hasattr(written, "add_done_callback"):
        written.add_done_callback(lambda _: release())
        return written
    return _released_after(written, release)


async def _released_after(written: Awaitable[Event], release: Callable[[], None]) -> Event:
    try:
        return await written
    finally:
        release()


_T = TypeVar("_T")


def _slices(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), _EXPIRY_SLICE):
        yield items[start : start + _EXPIRY_SLICE]


async def _outcomes(writes: Sequence[Awaitable[Event]]) -> list[Event | BaseException]:
    """Each write's event or exception, in order, once all are settled.

    The group commit's writes (like futures) take a done callback, called in
    the pass that settles their batch: waiting on those costs no task per
    write, where ``asyncio.gather`` would wrap each of 100,000 revokes in one.
    """
    done = asyncio.get_running_loop().create_future()
    outcomes: list[Event | BaseException | None] = [None] * len(writes)
    remaining = len(writes)

    def settled(index: int, write: Any) -> None:
        nonlocal remaining
        failure = asyncio.CancelledError() if write.cancelled() else write.exception()
        outcomes[index] = failure if failure is not None else write.result()
        remaining -= 1
        if not remaining and not done.done():
            done.set_result(None)

    for index, write in enumerate(writes):
        add_done_callback = getattr(write, "add_done_callback", None)
        if add_done_callback is None:  # a write that waits for room in the queue first: a coroutine
            add_done_callback = asyncio.ensure_future(write).add_done_callback
        add_done_callback(functools.partial(settled, index))
    if remaining:
        await done
    return cast(list[Event | BaseException], outcomes)
