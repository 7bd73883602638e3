"""A least-recently-used map bounded in bytes, for the read-through replicas' cache.

Written here rather than taken from ``cachetools``: its ``LRUCache`` weighs
values only (``getsizeof(value)``), so keys would go uncounted, and every hit
pays two Python-level method calls; here a hit is one dict lookup and one
``move_to_end`` on an ``OrderedDict`` (both C). Entries are weighed once, by
a function handed in, when they are stored and again when they leave (the
same function of the same immutable key and value, so no weight is kept).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """``key -> value`` with at most ``max_bytes`` of weight; storing past it drops the least recently used.

    ``weigh(key, value)`` is an entry's cost in bytes. An entry heavier than
    the whole bound is not stored. :meth:`find` and :meth:`store` count as
    uses; :meth:`peek`, :meth:`pop` and :meth:`replace` do not.
    """

    __slots__ = ("_data", "_weigh", "evictions", "hits", "max_bytes", "weight")

    def __init__(self, max_bytes: int, weigh: Callable[[K, V], int]) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._weigh = weigh
        self._data: OrderedDict[K, V] = OrderedDict()
        self.weight = 0
        """The entries' total weight in bytes, never above ``max_bytes``."""
        self.evictions = 0
        """Entries dropped to make room (not those removed by pop or replaced)."""
        self.hits = 0
        """Calls of :meth:`find` that found their key."""

    def find(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        data = self._data
        value = data.get(key)
        if value is not None:
            data.move_to_end(key)
            self.hits += 1
        return value

    def peek(self, key: K) -> V | None:
        """The value of ``key`` without counting it as a use."""
        return self._data.get(key)

    def store(self, key: K, value: V) -> bool:
        """Store ``value`` as the most recently used; return False if it alone outweighs the bound (not stored)."""
        data = self._data
        old = data.pop(key, None)
        if old is not None:
            self.weight -= self._weigh(key, old)
        weight = self._weigh(key, value)
        if weight > self.max_bytes:
            return False
        data[key] = value
        self.weight += weight
        self._shrink()
        return True

    def replace(self, key: K, value: V) -> bool:
        """Change the value of a stored ``key`` in place (its recency unchanged); False if ``key`` is absent.

        A value that alone outweighs the bound removes the key instead.
        """
        data = self._data
        old = data.get(key)
        if old is None:
            return False
        weight = self._weigh(key, value)
        if weight > self.max_bytes:
            self.pop(key)
            return True
        data[key] = value
        self.weight += weight - self._weigh(key, old)
        self._shrink()
        return True

    def pop(self, key: K) -> V | None:
        """Remove ``key``; return its value, or None if it was not stored."""
        old = self._data.pop(key, None)
        if old is not None:
            self.weight -= self._weigh(key, old)
        return old

    def clear(self) -> None:
        self._data.clear()
        self.weight = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        """The keys from the least to the most recently used."""
        return iter(list(self._data))

    def _shrink(self) -> None:
        data = self._data
        weigh = self._weigh
        while self.weight > self.max_bytes:
            key, value = data.popitem(last=False)
            self.weight -= weigh(key, value)
            self.evictions += 1
