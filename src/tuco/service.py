"""The application layer: the store, the log and their lifecycle, and the operations every front end offers.

HTTP (native and ASGI) and the runtime call :class:`Service`; nothing here
knows HTTP, and nothing here names a concrete log (:mod:`tuco.assembly` turns
settings into one). The service is the :class:`~tuco.ports.CommitSink` the log
runs with: every committed event reaches :meth:`Service.apply` once, in order,
which is where changes also fan out to watchers.

The service composes its parts rather than doing their work: the read
strategy it holds answers reads (:mod:`tuco.reads`: every key in memory, or
:mod:`tuco.cache`: read through from the shared state), :mod:`tuco.replay`
rebuilds the store at start, :mod:`tuco.expirer` writes what comes due,
:mod:`tuco.watchers` serves watch streams and long polls, and
:mod:`tuco._service_metrics` registers the metric families.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

from tuco import _service_metrics
from tuco._service_leases import LeasesAndTokens
from tuco.collector import CollectorPacer
from tuco.core.events import Entry, Event, EventType, Expiry, Precondition
from tuco.core.history import Change
from tuco.core.origin import Origin
from tuco.core.snapshots import Snapshots, encode_state
from tuco.core.store import DEFAULT_HISTORY_BYTES, ExpiringEntry, Page, Store
from tuco.core.tokens import Access, Principal, Tokens
from tuco.core.txn import Txn, TxnOutcome
from tuco.core.watch import Selector
from tuco.errors import (
    LeaseNotFoundError,
    LogError,
    SnapshotError,
)
from tuco.expirer import Expirer
from tuco.limits import Caps, Limits
from tuco.observability import Metrics
from tuco.ports import EventHistory, Read, TransactionLog
from tuco.reads import FullCopy, ReadStrategy
from tuco.replay import ReplayStats, replay
from tuco.snapshotting import DatabaseSnapshot, DatabaseSnapshots, SnapshotStream
from tuco.watchers import Hub, Watch, Watchers, WatchSettings

__all__ = ["Limits", "Phase", "ReplayStats", "Service", "SnapshotStream"]


class Phase(enum.Enum):
    """Where the process is in its life; drives ``/readyz`` and key requests."""

    STARTING = "starting"
    SERVING = "serving"
    STOPPING = "stopping"


class Service(LeasesAndTokens):
    """Store and log with their lifecycle (replay, serve, close) and the key-value operations.

    ``get(key)`` returns the key's :class:`~tuco.core.events.Entry` from this
    replica's store (raises NoSuchKeyError, also for a key past its deadline);
    it is the store's lookup itself, so for a live key with a deadline it raises
    :class:`~tuco.core.store.ExpiringEntry` carrying the entry and its deadline.
    ``read(key)`` is ``get`` without raising: the entry, the ExpiringEntry, or
    None for a key absent or expired. ``find(key)`` is the HTTP read path's
    lookup: the entry's plain tuple, with no copy and no exception, for a key
    without a deadline; None otherwise (absent, or expiring: then ask ``read``).

    ``reads`` is how it reads (:class:`~tuco.reads.ReadStrategy`): every key
    in memory (the default, :class:`~tuco.reads.FullCopy`), or a read-through
    cache (:class:`~tuco.cache.ReadThrough`), whose ``find`` misses must be
    answered by awaiting :meth:`fetch`; ``reads_through`` tells the HTTP layer,
    which picks its read path once, at start.
    """

    def __init__(
        self,
        log: TransactionLog,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        *,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        history_age_ms: int = 0,
        watch_settings: WatchSettings | None = None,
        access: Access | None = None,
        reads: ReadStrategy | None = None,
    ) -> None:
        self.reads: ReadStrategy = (
            reads if reads is not None else FullCopy(log, history_bytes=history_bytes, history_age_ms=history_age_ms)
        )
        self.store: Store = self.reads.store
        self.access = access or Access()
        """Whether requests must authenticate (the HTTP front ends pick their handler by it)."""
        self.watchers = Watchers(self, watch_settings)
        self.log = log
        self.limits = limits or Limits()
        self.metrics = metrics
        self.phase = Phase.STARTING
        self.snapshots = Snapshots(self.limits.snapshot_max_bytes)
        """The snapshots being taken: :meth:`apply` hands them each event first (copy-on-write before images)."""
        self._database_snapshots = DatabaseSnapshots()  # a read-through replica's, read from its log
        # Reads are the hot path: get is the store's own lookup, not a method calling it.
        self.find: Callable[[str], tuple[bytes, int, int, int] | None] = self.reads.find
        self.get: Callable[[str], Entry] = self.store.lookup
        self.read: Callable[[str], Entry | ExpiringEntry | None] = self.store.read  # get without raising
        self._apply = self.reads.apply
        self._pace_collector = CollectorPacer().applied  # see tuco.collector: writes keep its own trigger from firing
        self.store.now = log.now_ms  # expiry is decided by the log's clock, and reads hide what it expired
        self.expirer = Expirer(self.store, log)
        # A read-through store holds only the keys with a deadline: the bound is for a full copy in memory.
        self.caps = Caps(self.limits, self.store, bounded=not self.reads_through)
        self._check_write = self.caps.check_write  # every PUT's checks: the hot path calls them directly
        if metrics is not None:
            _service_metrics.register(
                metrics,
                self,
                max_store_bytes=self.limits.max_store_bytes,
                max_store_keys=None if self.reads_through else self.limits.max_store_keys,
            )
            self.reads.register(metrics)

    @property
    def reads_through(self) -> bool:
        """Whether keys are read through from the shared state (not every key is in memory)."""
        return self.reads.reads_through

    @property
    def runs_expirer(self) -> bool:
        """Whether the expirer runs while serving (a serverless function's does not)."""
        return self.reads.runs_expirer

    @property
    def store_refusals(self) -> int:
        """Writes refused because the store is at its bound (TUCO_MAX_STORE_BYTES or TUCO_MAX_STORE_KEYS)."""
        return self.caps.refusals

    @property
    def expired_keys(self) -> int:
        """Keys this replica deleted because their deadline passed (another replica may have deleted others)."""
        return self.expirer.expired_keys

    @property
    def expiry_rounds(self) -> int:
        """Rounds the expirer finished (a look at the deadlines, and the writes of what was due): it is alive.

        A round that starts after a clock reading has seen that time; "nothing expired" is known once two more ended.
        """
        return self.expirer.rounds

    def store_status(self) -> dict[str, object] | None:
        """The store's size against its bounds, for /readyz (None for a read-through store, which holds no copy).

        ``full``: writes are being refused: one was, and the store has not shrunk below its size then
        (or not even an empty new key fits).
        """
        return None if self.reads_through else self.caps.store_status()

    @property
    def ready(self) -> bool:
        """Replay finished and the log takes writes."""
        return self.phase is Phase.SERVING and self.log.failure is None

    @property
    def revision(self) -> int:
        """The sequence of the last event applied, or a newer head a read saw (a function follows no feed)."""
        applied = self.store.last_sequence
        seen = self.reads.seen_head
        return seen if seen > applied else applied

    # -- CommitSink -------------------------------------------------------------

    def apply(self, event: Event) -> object:
        """Apply one committed event (this replica's or another's) to the store, and wake its watchers."""
        if self.snapshots.running:
            self.snapshots.before(self.store, event)
        applied = self._apply(event)
        self._pace_collector()
        hub = self.watchers.hub
        if hub is not None:
            hub.changed()
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

    def record(self, key: str) -> tuple[bytes, int, int, int] | None:
        return self.store.record(key)

    def keys_under(self, prefix: str) -> Iterator[str]:
        return self.store.keys_under(prefix)

    def read_at(self, key: str, revision: int) -> tuple[bytes, int, int, int] | None:
        """The key as it was at ``revision`` (None: absent); raises HistoryCompactedError once that is not retained."""
        return self.store.record_at(key, revision)

    def key_history(self, key: str, before: int, limit: int) -> list[Change]:
        """The retained changes of ``key`` below ``before``, newest first, with who made them."""
        return self.store.history.changes_of(key, before, limit)

    # -- operations ---------------------------------------------------------------

    def consistent_get(self, key: str) -> Awaitable[Entry]:
        """The key as of every write any replica acknowledged before the call."""
        return self.reads.consistent_get(key)

    def put(
        self, key: str, value: bytes, precondition: Precondition | None = None, origin: Origin | None = None
    ) -> Awaitable[Event]:
        """Store ``value`` under ``key`` if ``precondition`` holds; await the result for the event.

        ``origin``: who asked (recorded with the change). Raises the
        InvalidRequestError for a key or value over the limits at once;
        the awaitable raises PreconditionFailedError or a LogError.
        """
        self._check_write(key, value)
        return self.log.write_put(key, value, precondition, origin)

    def delete(
        self, key: str, precondition: Precondition | None = None, origin: Origin | None = None
    ) -> Awaitable[Event]:
        """Record that ``key`` is deleted if ``precondition`` holds (deleting an absent key is no error)."""
        return self.log.write_delete(key, precondition, origin)

    def txn(self, txn: Txn, by: Principal | None = None, origin: Origin | None = None) -> Awaitable[TxnOutcome]:
        """Run a transaction: its compares and the branch they choose, all at one revision.

        Raises at once for a transaction over a cap (TUCO_MAX_TXN_OPS, TUCO_MAX_TXN_BYTES), a put over
        the key or value limits, the store bound, or a lease known here to be another principal's;
        the awaitable raises LeaseNotFoundError for a lease that does not exist when it is decided.
        """
        self.caps.check_txn(txn)
        for op in (*txn.success, *txn.failure):
            if op.lease:
                found = self.store.leases.get(op.lease)
                if found is not None:
                    self._check_owner(found, by)
                elif by is not None:  # unknown here: maybe granted elsewhere a moment ago; nobody else's to use
                    raise LeaseNotFoundError(op.lease)
        return self.log.write_txn(txn, origin)

    def fetch(self, key: str) -> Awaitable[Read]:
        """The key with when it expires, for a read path that may wait (a full copy answers from memory, at once).

        Raises :class:`~tuco.errors.LogError` if a read-through replica cannot read the database.
        """
        return self.reads.fetch(key)

    def read_consistent(self, key: str) -> Awaitable[Read]:
        """:meth:`fetch` as of every write any replica acknowledged before the call."""
        return self.reads.read_consistent(key)

    def page_through(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Awaitable[Page]:
        """:meth:`page` for a read path that may wait (raises HistoryCompactedError, LogError)."""
        return self.reads.page_through(prefix, after=after, limit=limit, revision=revision)

    def page(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        """A page of the keys under ``prefix`` at ``revision`` (None: now); raises HistoryCompactedError."""
        return self.store.page(prefix, after=after, limit=limit, revision=revision)

    def catch_up(self) -> Awaitable[None]:
        """Make every event committed anywhere visible here (a revision another replica served)."""
        return self.reads.catch_up()

    async def open_snapshot(self, *, chunk_keys: int = 64) -> SnapshotStream | DatabaseSnapshot:
        """:meth:`snapshot`, or on a read-through replica the log's own state at its head (one database snapshot).

        Raises SnapshotError (over the running snapshots' cap, or a log that cannot read
        its state), LogError if the database cannot be read.
        """
        if not self.reads_through:
            return self.snapshot(chunk_keys=chunk_keys)
        return await self._database_snapshots.open(self.log, self.snapshots.max_running)

    def snapshot(self, *, chunk_keys: int = 64) -> SnapshotStream:
        """The whole state at the current revision as a snapshot (:mod:`tuco.core.snapshot`), streamed in chunks.

        Writes go on while it streams (:mod:`tuco.core.snapshots`: memory grows with
        them, not with the store). Raises SnapshotError at once for a read-through
        replica (it holds no copy: snapshot a full one) or over the running snapshots'
        cap; the iterator raises it if the snapshot is abandoned midway.
        """
        if self.reads_through:
            raise SnapshotError("this replica reads through to PostgreSQL and holds no full copy: see open_snapshot")
        if self.phase is not Phase.SERVING:
            raise SnapshotError("the server is not serving (starting or stopping)")
        state = self.snapshots.begin(self.store, self.log.now_ms())
        return SnapshotStream(
            self.snapshots, state, encode_state(state, self.store, int(time.time() * 1000), chunk_keys)
        )

    # -- watching -----------------------------------------------------------------

    def watch(self, selector: Selector, after: int, by: Principal | None = None) -> Watch:
        """A cursor for the changes ``selector`` matches after revision ``after``, opened by ``by``; close it when done.

        Raises TooManyWatchersError over the cap (WatcherShareError over ``by``'s
        share of it), HistoryCompactedError if the changes after ``after`` are
        neither in memory nor readable from the log, RevisionAheadError if
        ``after`` is past the store's revision (catch up first).
        """
        return self.watchers.open(selector, after, by)

    def wait_for_change(self, key: str, revision: int, timeout: float) -> Awaitable[None]:
        """Until ``key`` changed at ``revision`` or later (or ``timeout`` seconds, or shutdown); no polling.

        Raises RevisionAheadError if ``revision`` - 1 is past the store's revision (catch up first).
        """
        return self.reads.wait_for_change(self.watchers, key, revision, timeout)

    def changed_since(self, key: str, revision: int) -> bool:
        """Whether ``key`` changed (a DELETE too) at ``revision`` or later, as far as memory can tell."""
        return self.reads.changed_since(self.watchers, key, revision)

    @property
    def reads_back_history(self) -> bool:
        """Whether the log can serve watches older than memory (:class:`~tuco.ports.EventHistory`)."""
        return isinstance(self.log, EventHistory)

    def end_watches(self) -> None:
        """End every watch stream and long poll now (shutdown); they do not hold the grace period."""
        self.watchers.end()
        self.reads.end()

    @property
    def watch_count(self) -> int:
        """Open watch streams."""
        return self.watchers.count

    @property
    def watch_settings(self) -> WatchSettings:
        """Bounds on watching, and who may watch from a browser."""
        return self.watchers.settings

    @property
    def hub(self) -> Hub | None:
        """Who waits for changes, while anyone does."""
        return self.watchers.hub

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> ReplayStats:
        """Replay the log into the store, then start writing; the service turns ready."""
        await self.reads.open()
        events, started = await replay(self.log, self.store)
        await self.log.run(self)
        stats = ReplayStats(events, len(self.store), round(time.perf_counter() - started, 3))
        self.phase = Phase.SERVING
        if self.runs_expirer:
            self.expirer.start()
        return stats

    async def refresh(self) -> None:
        """Re-read what the read strategy keeps of the shared state (a function's store is as old as its last call)."""
        await self.reads.refresh()
        store = self.store = self.caps.store = self.expirer.store = self.reads.store
        self.get = store.lookup
        self.read = store.read

    async def aclose(self) -> None:
        """Stop serving keys and close the log after committing what is queued."""
        self.phase = Phase.STOPPING
        self.end_watches()
        await self.expirer.aclose()
        await self.log.aclose()
        await self.reads.aclose()

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
        origin: Origin | None = None,
    ) -> Awaitable[Event]:
        """:meth:`put` with a time to live (the log's clock sets the deadline) or attached to a lease.

        Raises LeaseLimitError for a lease that holds TUCO_MAX_KEYS_PER_LEASE
        keys already, LeaseNotFoundError for a lease that is not ``by``'s (see
        :meth:`owned_lease`); the awaitable raises LeaseNotFoundError for a lease
        that does not exist (or has expired) when the log decides.
        """
        self._check_write(key, value)
        if ttl_ms:
            self.caps.check_ttl(ttl_ms)
        expiry = Expiry(ttl=ttl_ms, lease=lease)
        if not lease:
            return self.log.write_expiring(EventType.PUT, key, value, precondition, expiry, origin)
        write = functools.partial(self.log.write_expiring, EventType.PUT, key, value, precondition, expiry, origin)
        found = self.store.leases.get(lease)
        if found is None:
            if by is not None:
                return self._when_owned(lease, by, lambda known: self.caps.attach(known, key, write))
            return write()  # the log decides: no such lease (it may be another replica's, not applied here yet)
        self._check_owner(found, by)
        return self.caps.attach(found, key, write)

    # What the HTTP layer reads

    @property
    def applied_revision(self) -> int:
        """The sequence of the last event applied to the store: the ``X-Tuco-Revision`` of a GET found in memory."""
        return self.store.last_sequence

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
