"""Read-through replicas (``TUCO_STATE=cache``) and the serverless functions' service: no full copy in memory.

A full replica holds every key; this one holds three small things and reads
the rest from the shared log's current-state table (:class:`~tuco.ports.StateReader`):

* a byte-bounded LRU of keys without a deadline (:class:`~tuco.core.lru.LRU`,
  keys and values counted plus a measured per-entry overhead);
* a :class:`~tuco.core.store.Store` holding only the keys with a deadline or
  a lease, and the leases: what the expirer, the lease endpoints and revoke
  need, kept exactly as a full replica keeps them (the log replays only those
  keys, through a partial index, so start-up does not grow with the data);
* no history of values (``history_bytes=0``): watchers read on from the log's
  table of events, as a full replica's do once memory no longer reaches back.

Coherence. The change feed the replica already follows hands every committed
event to :meth:`ReadThrough.apply`, in order. An event on a cached key
newer than its entry replaces the entry (a PUT) or evicts it (a DELETE, or a
PUT with a deadline: such keys live in the store). A miss reads one row and the
head of the same snapshot; the row is cached only if the feed has not gone past
that head (else an event the feed applied already could be newer than the row,
and nothing would correct it). So a cached entry is never older than what the
feed applied, and a default read is stale by at most the feed's lag; a
``?consistent=true`` read never uses the cache at all: it reads the row.

Serverless (``follow=False``). A frozen function follows no feed, so nothing
could keep a cache coherent: reads go to the database, unless a staleness
bound is configured (an entry then serves until it is that old), and the
store of expiring keys and leases is re-read by :meth:`refresh` before a
request that needs it. No expirer runs between or during invocations; keys
past their deadline are hidden from every read all the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tuco.core.events import Entry, Event, EventType
from tuco.core.lru import LRU
from tuco.core.store import ExpiringEntry, Page, Store
from tuco.core.txn import decode_writes, encode_writes
from tuco.errors import LogError, NoSuchKeyError, RevisionAheadError
from tuco.observability import Metrics
from tuco.ports import Read, StateReader, TransactionLog
from tuco.watchers import Watchers

__all__ = ["ENTRY_OVERHEAD_BYTES", "ReadThrough"]

# What a cached entry costs beyond its key's UTF-8 and its value's bytes: the entry tuple and its
# integers, the key's str and the value's bytes headers, the OrderedDict's slot and link (tracemalloc:
# 317 bytes per entry with 16-byte keys and 1 KiB values, 50,000 entries).
ENTRY_OVERHEAD_BYTES = 320
_PUT = EventType.PUT
_DELETE = EventType.DELETE
_TXN = EventType.TXN

CachedEntry = tuple[bytes, int, int, int]


def weigh(key: str, entry: CachedEntry) -> int:
    """A cached entry's cost against TUCO_CACHE_MAX_BYTES."""
    return len(key.encode()) + len(entry[0]) + ENTRY_OVERHEAD_BYTES


def _weigh_timed(key: str, timed: tuple[CachedEntry, float]) -> int:
    return weigh(key, timed[0])


def _never_cached(key: str) -> CachedEntry | None:
    return None


class ReadThrough:
    """The :class:`~tuco.reads.ReadStrategy` of a replica that reads keys through a bounded LRU from the shared state.

    Chosen at assembly: the HTTP read path calls ``find`` (the LRU's own
    lookup on a hit) and, on a miss, awaits :meth:`fetch`. ``follow=False``
    is the serverless shape.
    """

    reads_through = True

    def __init__(
        self,
        log: TransactionLog,
        reader: StateReader,
        *,
        cache_bytes: int = 64 << 20,
        follow: bool = True,
        max_staleness: float = 0.0,
    ) -> None:
        self.log = log
        self.store = Store(history_bytes=0)
        self.reader = reader
        self.follows = follow
        self.runs_expirer = follow
        self.max_staleness = max_staleness
        self.cache: LRU[str, CachedEntry] = LRU(cache_bytes if follow else 0, weigh)
        self._timed: LRU[str, tuple[CachedEntry, float]] = LRU(
            cache_bytes if not follow and max_staleness > 0 else 0, _weigh_timed
        )
        self.misses = 0
        """Reads that went to the database (not counting consistent reads, which always do)."""
        self._stale_finds = 0  # a function's entries found but too old: misses, not hits
        self.seen_head = 0
        """The newest head a read saw (a function follows no feed)."""
        self._key_waits: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._verdicts: dict[tuple[str, int], bool] = {}
        find: Callable[[str], CachedEntry | None]
        if follow:
            find = self.cache.find
        elif max_staleness > 0:
            find = self._find_fresh
        else:
            find = _never_cached
        self.find = find

    def register(self, metrics: Metrics) -> None:
        """The cache's families."""
        metrics.gauge("tuco_cache_bytes", "bytes the read-through cache holds", lambda: self.cache.weight)
        metrics.gauge("tuco_cache_entries", "keys the read-through cache holds", lambda: len(self.cache))
        metrics.counter("tuco_cache_hits", "reads answered from the cache", self._hits)
        metrics.counter("tuco_cache_misses", "reads that went to the database", lambda: self.misses)
        metrics.counter("tuco_cache_evictions", "entries dropped to stay within the bound", self._evictions)

    def _hits(self) -> float:
        return float(self.cache.hits + self._timed.hits - self._stale_finds)

    def _evictions(self) -> float:
        return float(self.cache.evictions + self._timed.evictions)

    @property
    def revision(self) -> int:
        """The revision applied here, or the newest head a read saw (a function follows no feed)."""
        return max(self.store.last_sequence, self.seen_head)

    # -- lifecycle ----------------------------------------------------------------

    async def open(self) -> None:
        """Open the log and the reader (the service then replays the keys with a deadline and the leases only)."""
        await self.log.open()
        await self.reader.open()

    async def aclose(self) -> None:
        await self.reader.aclose()

    async def refresh(self) -> None:
        """Re-read the keys with a deadline, the leases and the tokens (a function's store is as old as its last call).

        The token registry object stays the same (the HTTP guard holds it); its content is the one re-read.
        """
        store = Store(history_bytes=0, now=self.log.now_ms)
        async for batch in self.log.read_events():
            store.apply_batch(batch)
        self.store.tokens.replace(store.tokens)
        store.tokens = self.store.tokens
        self.store = store

    # -- CommitSink ---------------------------------------------------------------

    def apply(self, event: Event) -> object:
        """Update or evict the key's cached entry, keep the store of expiring keys, wake the long polls."""
        sequence, type, key, value, create_revision, version, lifetime, _ = event
        if type is _TXN:
            return self._apply_txn(event)
        cached = self.cache.peek(key)
        if cached is not None and cached[2] < sequence:
            if type is _PUT and lifetime is None:
                self.cache.replace(key, (value, create_revision or cached[1], sequence, version or cached[3] + 1))
            else:
                self.cache.pop(key)
        if self._timed.peek(key) is not None:
            self._timed.pop(key)
        if type is _PUT and lifetime is None:
            # Plain keys are not kept in the store; one that had a deadline loses it there (a DELETE does that).
            applied = self.store.apply(Event(sequence, _DELETE, key))
        else:
            applied = self.store.apply(event)
        if self._key_waits and key in self._key_waits:
            self._wake(key, sequence)
        return applied

    def _apply_txn(self, event: Event) -> object:
        """A transaction: each write updates the cache as its own event would; the store gets it as one event."""
        sequence = event.sequence
        kept = []
        for write in decode_writes(sequence, event.value):
            key = write.key
            cached = self.cache.peek(key)
            if cached is not None and cached[2] < sequence:
                if write.type is _PUT and write.lifetime is None:
                    self.cache.replace(key, (write.value, cached[1], sequence, cached[3] + 1))
                else:
                    self.cache.pop(key)
            if self._timed.peek(key) is not None:
                self._timed.pop(key)
            # Plain keys are not kept in the store: a plain PUT becomes the DELETE of any deadline it had.
            kept.append(
                (_DELETE, key, b"", 0, 0)
                if write.type is _PUT and write.lifetime is None
                else (write.type, key, write.value, write.deadline, write.lease)
            )
        applied = self.store.apply(event._replace(value=encode_writes(kept)))
        for _, key, _, _, _ in kept:
            if self._key_waits and key in self._key_waits:
                self._wake(key, sequence)
        return applied

    # -- reads --------------------------------------------------------------------

    async def fetch(self, key: str) -> Read:
        """The key for a read that missed the cache: the store's if it has a deadline here, else the database's.

        Raises :class:`~tuco.errors.LogError` if the database cannot be read.
        """
        if self.follows:
            try:
                entry = self.store.lookup(key)
            except ExpiringEntry as expiring:
                return Read(expiring.entry, expiring.expires_at, self.store.last_sequence)
            except NoSuchKeyError:
                if self.store.has_deadline(key):  # expired here, its DELETE not written yet
                    return Read(None, 0, self.store.last_sequence)
            else:  # pragma: no cover - the store holds no key without a deadline
                return Read(entry, 0, self.store.last_sequence)
        self.misses += 1
        found = await self.reader.read(key)
        self._see(found.revision)
        row = found.entry
        if row is not None and not found.expires_at:
            if self.follows:
                if self.store.last_sequence <= found.revision and not self.store.has_deadline(key):
                    self.cache.store(key, row)
            elif self.max_staleness > 0:
                self._timed.store(key, (row, time.monotonic()))
        return found

    async def read_consistent(self, key: str) -> Read:
        """The key as of every write acknowledged anywhere before the call: always the database's row."""
        found = await self.reader.read(key)
        self._see(found.revision)
        return found

    async def consistent_get(self, key: str) -> Entry:
        found = await self.read_consistent(key)
        if found.entry is None:
            raise NoSuchKeyError(key)
        return found.entry

    def _find_fresh(self, key: str) -> CachedEntry | None:
        """A function's cached entry, if it is younger than the staleness bound."""
        timed = self._timed.find(key)
        if timed is None:
            return None
        if time.monotonic() - timed[1] > self.max_staleness:
            self._timed.pop(key)
            self._stale_finds += 1
            return None
        return timed[0]

    async def page_through(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        """A page of the listing, read from the database (raises HistoryCompactedError, LogError)."""
        page = await self.reader.page(prefix, after=after, limit=limit, revision=revision)
        self._see(page.revision)
        return page

    async def catch_up(self) -> None:
        await self.log.catch_up()
        if not self.follows:
            self._see(await self.reader.head())

    def _see(self, head: int) -> None:
        if head > self.seen_head:
            self.seen_head = head

    # -- long polls ---------------------------------------------------------------

    def wait_for_change(self, watchers: Watchers, key: str, revision: int, timeout: float) -> Awaitable[None]:
        return self._wait_for_change(watchers, key, revision, timeout)

    async def _wait_for_change(self, watchers: Watchers, key: str, revision: int, timeout: float) -> None:
        """Until ``key`` changes at ``revision`` or later: asked of the database once, then woken by the feed.

        A function (no feed) asks the database again every second until the timeout.
        Raises RevisionAheadError if ``revision`` - 1 is past the head this replica knows.
        """
        if revision - 1 > self.revision:
            raise RevisionAheadError(revision - 1, self.revision)
        if watchers.ended:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = (revision, future)
        self._key_waits.setdefault(key, []).append(waiter)  # before asking: no change slips between
        verdict = True
        try:
            deadline = loop.time() + timeout
            while True:
                try:
                    if await self.reader.changed_since(key, revision):
                        break
                except LogError:
                    break  # cannot tell: answer with the current state (its read says what failed)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    verdict = False
                    break
                await asyncio.wait((future,), timeout=remaining if self.follows else min(remaining, 1.0))
                if future.done():
                    break
                if self.follows:
                    verdict = False
                    break
        finally:
            waiting = self._key_waits.get(key)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._key_waits[key]
        self._verdicts[(key, revision)] = verdict

    def changed_since(self, watchers: Watchers, key: str, revision: int) -> bool:
        """What the wait that just ended found (the HTTP layer asks right after it, in the same step)."""
        return self._verdicts.pop((key, revision), False)

    def _wake(self, key: str, sequence: int) -> None:
        kept = []
        for wanted, future in self._key_waits[key]:
            if wanted <= sequence:
                if not future.done():
                    future.set_result(None)
            else:
                kept.append((wanted, future))
        if kept:
            self._key_waits[key] = kept
        else:
            del self._key_waits[key]

    def end(self) -> None:
        """End the long polls (shutdown)."""
        for waiting in self._key_waits.values():
            for _, future in waiting:
                if not future.done():
                    future.set_result(None)
