"""How a service answers reads: the :class:`ReadStrategy` it composes, and :class:`FullCopy`, every key in memory.

A full replica holds every key in its store; a read-through replica
(:class:`tuco.cache.ReadThrough`) holds a bounded cache and reads the rest
from the shared state. The service holds one strategy, picked at assembly,
and asks it, never its type, how to read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from tuco.core.events import Entry, Event
from tuco.core.store import DEFAULT_HISTORY_BYTES, ExpiringEntry, Page, Store
from tuco.errors import NoSuchKeyError
from tuco.observability import Metrics
from tuco.ports import Read, TransactionLog
from tuco.watchers import Watchers

__all__ = ["FullCopy", "ReadStrategy"]

Found = tuple[bytes, int, int, int]


class ReadStrategy(Protocol):
    """The reads a service delegates, and the store they keep.

    ``find`` is the HTTP read path's lookup (a miss is answered by awaiting
    :meth:`fetch`); ``apply`` takes every committed event; ``seen_head`` is a
    revision newer than the store's that a read saw (0 for a replica that
    follows every event). ``reads_through``: not every key is in ``store``.
    """

    store: Store
    reads_through: bool
    runs_expirer: bool
    seen_head: int

    @property
    def find(self) -> Callable[[str], Found | None]: ...
    @property
    def apply(self) -> Callable[[Event], object]: ...

    async def open(self) -> None: ...
    async def aclose(self) -> None: ...
    async def refresh(self) -> None: ...
    async def fetch(self, key: str) -> Read: ...
    async def read_consistent(self, key: str) -> Read: ...
    async def consistent_get(self, key: str) -> Entry: ...
    async def page_through(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page: ...
    async def catch_up(self) -> None: ...
    def wait_for_change(self, watchers: Watchers, key: str, revision: int, timeout: float) -> Awaitable[None]: ...
    def changed_since(self, watchers: Watchers, key: str, revision: int) -> bool: ...
    def end(self) -> None: ...
    def register(self, metrics: Metrics) -> None: ...


class FullCopy:
    """Every key in memory: reads are the store's lookups, answered at once.

    ``find`` returns the entry's plain tuple, with no copy and no exception,
    for a key without a deadline; None otherwise (absent, or expiring: then
    ask the store's ``lookup``).
    """

    reads_through = False
    runs_expirer = True
    seen_head = 0

    def __init__(
        self, log: TransactionLog, *, history_bytes: int = DEFAULT_HISTORY_BYTES, history_age_ms: int = 0
    ) -> None:
        self._log = log
        self.store = store = Store(history_bytes=history_bytes, history_age_ms=history_age_ms)
        # Reads and applies are the hot path: the store's own methods, not methods calling them.
        self.find: Callable[[str], Found | None] = store.find
        self.apply: Callable[[Event], object] = store.apply

    async def open(self) -> None:
        """Nothing to open: the service replays the log into the store."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def refresh(self) -> None:
        """Nothing to re-read: the store follows every event."""

    async def fetch(self, key: str) -> Read:
        """The key with when it expires, from memory, at once."""
        store = self.store
        try:
            return Read(store.lookup(key), 0, store.last_sequence)
        except ExpiringEntry as expiring:
            return Read(expiring.entry, expiring.expires_at, store.last_sequence)
        except NoSuchKeyError:
            return Read(None, 0, store.last_sequence)

    async def read_consistent(self, key: str) -> Read:
        """:meth:`fetch` as of every write any replica acknowledged before the call."""
        await self._log.catch_up()
        return await self.fetch(key)

    async def consistent_get(self, key: str) -> Entry:
        await self._log.catch_up()
        return self.store.entry(key)

    async def page_through(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        return self.store.page(prefix, after=after, limit=limit, revision=revision)

    async def catch_up(self) -> None:
        await self._log.catch_up()

    def wait_for_change(self, watchers: Watchers, key: str, revision: int, timeout: float) -> Awaitable[None]:
        return watchers.wait_for_change(key, revision, timeout)

    def changed_since(self, watchers: Watchers, key: str, revision: int) -> bool:
        return watchers.changed_since(key, revision)

    def end(self) -> None:
        """No waits of its own to end (the watchers end theirs)."""

    def register(self, metrics: Metrics) -> None:
        """No families of its own."""
