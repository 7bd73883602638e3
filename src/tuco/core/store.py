"""The in-memory state: the map that readers are served from, with revisions and an ordered scan.

Entries are plain ``(value, create_revision, mod_revision, version)`` tuples
(an :class:`~tuco.core.events.Entry` without the NamedTuple's constructor), the
cheapest record per key. The key order for listings is a ``SortedList``
built on the first listing, not at start-up: replay stays a dict update per
event, and a process nobody lists from never pays for the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from sortedcontainers import SortedList

from tuco.core.events import Entry, Event, EventType
from tuco.core.history import History
from tuco.errors import NoSuchKeyError

__all__ = ["Item", "Page", "Store"]

DEFAULT_HISTORY_BYTES = 32 << 20
_new = tuple.__new__
_PUT = EventType.PUT


class Item(NamedTuple):
    """One key of a listing, with its entry at the listing's revision."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


class Page(NamedTuple):
    """A page of a listing: its items at ``revision``, and the last key if more may follow."""

    revision: int
    items: list[Item]
    last_key: str | None


class Store:
    """A ``key -> entry`` map that changes only by applying logged events in order.

    Every mutation goes through :meth:`apply` (or :meth:`apply_batch` during
    replay), which remembers the last sequence applied and skips anything at or
    below it, so an event delivered twice (a follower catching up after a
    reconnect) is never applied twice. The store is used from one event loop
    thread; reads are single dict operations.
    """

    __slots__ = ("_data", "_index", "find", "history", "last_sequence")

    def __init__(self, *, history_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        self._data: dict[str, tuple[bytes, int, int, int]] = {}
        self.find: Callable[[str], tuple[bytes, int, int, int] | None] = self._data.get
        """The key's ``(value, create_revision, mod_revision, version)``, or None: the dict's own lookup (reads)."""
        self._index: SortedList | None = None
        self.history = History(history_bytes)
        self.last_sequence = 0

    def get(self, key: str) -> bytes:
        """Return the value of ``key``; raise :class:`NoSuchKeyError` if absent."""
        try:
            return self._data[key][0]
        except KeyError:
            raise NoSuchKeyError(key) from None

    def entry(self, key: str) -> Entry:
        """Return the value and revisions of ``key``; raise :class:`NoSuchKeyError` if absent."""
        try:
            return _new(Entry, self._data[key])
        except KeyError:
            raise NoSuchKeyError(key) from None

    def mod_revision(self, key: str) -> int:
        """The revision that last wrote ``key``, 0 if it is absent: what preconditions compare."""
        found = self._data.get(key)
        return found[2] if found is not None else 0

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Iterate over a snapshot of the current pairs."""
        return iter([(key, entry[0]) for key, entry in self._data.items()])

    def apply(self, event: Event) -> bool:
        """Apply ``event`` if it is newer than the last one applied; return whether it was.

        The change is recorded in :attr:`history` with the entry it replaced.
        On the write path of every replica, so kept to one unpack and one dict update.
        """
        sequence, type, key, value, create_revision, version = event
        if sequence <= self.last_sequence:
            return False
        data = self._data
        old = data.get(key)
        if type is _PUT:
            if create_revision:
                data[key] = (value, create_revision, sequence, version)
            elif old is None:
                data[key] = (value, sequence, sequence, 1)
            else:
                data[key] = (value, old[1], sequence, old[3] + 1)
            if old is None and self._index is not None:
                self._index.add(key)
            code = 1
        else:
            if old is not None:
                del data[key]
                if self._index is not None:
                    self._index.remove(key)
            code = 2
        self.last_sequence = sequence
        self.history.record(sequence, code, key, value, old)
        return True

    def apply_batch(self, events: Iterable[Event]) -> None:
        """Apply many events in order: the replay loop, kept tight because start-up time depends on it.

        Replay records no history: afterwards only the replayed revision can be listed.
        """
        data = self._data
        get = data.get
        pop = data.pop
        last = self.last_sequence
        put = EventType.PUT
        for sequence, type, key, value, create_revision, version in events:
            if sequence <= last:
                continue
            if type is put:
                if create_revision:
                    data[key] = (value, create_revision, sequence, version)
                elif (old := get(key)) is None:
                    data[key] = (value, sequence, sequence, 1)
                else:
                    data[key] = (value, old[1], sequence, old[3] + 1)
            else:
                pop(key, None)
            last = sequence
        self.last_sequence = last
        self._index = None
        self.history.reset(last)

    def snapshot(self) -> dict[str, bytes]:
        """A copy of the whole state's values, for tests and compaction."""
        return {key: entry[0] for key, entry in self._data.items()}

    def entries(self) -> dict[str, tuple[bytes, int, int, int]]:
        """A copy of every key's ``(value, create_revision, mod_revision, version)``: what compaction rewrites.

        One C-level dict copy (the entry tuples are immutable and shared), so
        the file log can take it between two batches without holding writers up.
        """
        return dict(self._data)

    def page(self, prefix: str, *, after: str | None = None, limit: int, revision: int | None = None) -> Page:
        """Up to ``limit`` keys starting with ``prefix`` and sorting after ``after``, as they were at ``revision``.

        Keys sort by code point, which is their UTF-8 byte order. ``revision``
        defaults to the current one; an older one is rebuilt from
        :attr:`history` (:class:`~tuco.errors.HistoryCompactedError` once it is
        gone). Costs O(log n + limit), plus the changes since ``revision``.
        """
        current = self.last_sequence
        if revision is None or revision >= current:
            revision = current
            changed: dict[str, Entry | None] = {}
        else:
            changed = self.history.state_at(revision)
        keys = self._keys_from(prefix, after)
        if changed:
            keys = _merge_sorted(
                keys, sorted(k for k in changed if k.startswith(prefix) and (after is None or k > after))
            )
        items: list[Item] = []
        data = self._data
        for key in keys:
            if not key.startswith(prefix):
                break
            if key in changed:
                then = changed[key]
                if then is None:
                    continue
                items.append(Item(key, *then))
            else:
                items.append(Item(key, *data[key]))
            if len(items) >= limit:
                return Page(revision, items, key)
        return Page(revision, items, None)

    def _keys_from(self, prefix: str, after: str | None) -> Iterator[str]:
        """Current keys in order, from the first that could start with ``prefix`` and follow ``after``."""
        if self._index is None:
            self._index = SortedList(self._data)
        index = self._index
        if after is not None and after >= prefix:
            return iter(index.irange(minimum=after, inclusive=(False, True)))
        return iter(index.irange(minimum=prefix))


def _merge_sorted(first: Iterator[str], second: list[str]) -> Iterator[str]:
    """Merge two ascending streams of distinct keys, yielding each key once."""
    others = iter(second)
    other = next(others, None)
    for key in first:
        while other is not None and other < key:
            yield other
            other = next(others, None)
        if other == key:
            other = next(others, None)
        yield key
    if other is not None:
        yield other
        yield from others
