"""Counters: atomic add on one key, by compare-and-swap with backoff.

Each add reads the value and writes the sum on the condition that the key is still at
the revision read; a lost race (412) backs off and tries again. ``_swap`` is the one
step a transaction endpoint would replace (read and write in one request, no race);
until the client has one, CAS is the way. A write whose answer was lost raises
:class:`~tuco.client.OutcomeUnknownError`: the add may or may not have counted.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from tuco.client._calls import Entry
from tuco.errors import InvalidRequestError, NoSuchKeyError, PreconditionFailedError

if TYPE_CHECKING:
    from tuco.client._protocols import AsyncKeys, Keys

__all__ = ["AsyncCounter", "Counter", "parse_count"]

_MAX_TRIES = 200
_BASE = 0.005
_CAP = 0.5


def parse_count(entry: Entry | None) -> int:
    """A counter's value: the key's decimal text, 0 when absent."""
    if entry is None:
        return 0
    text = entry.value.strip()
    if not text or not text.lstrip(b"-").isdigit() or len(text) > 40:
        raise InvalidRequestError(f"{entry.key!r} does not hold a whole number, so it is not a counter")
    return int(text)


def _delta(amount: int) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequestError("a counter adds whole numbers")
    return amount


def _pause(attempt: int) -> float:
    return random.uniform(0.0, min(_CAP, _BASE * 2 ** min(attempt, 16)))


class Counter:
    """A whole number under ``key``, added to atomically by any number of clients."""

    def __init__(self, client: Keys, key: str) -> None:
        self.client = client
        self.key = key

    def get(self) -> int:
        """The current value (0 if the key does not exist)."""
        try:
            return parse_count(self.client.get(self.key))
        except NoSuchKeyError:
            return 0

    def add(self, amount: int = 1) -> int:
        """Add ``amount`` (negative subtracts); the value after our add."""
        amount = _delta(amount)
        for attempt in range(_MAX_TRIES):
            try:
                entry: Entry | None = self.client.get(self.key, consistent=attempt > 0)
            except NoSuchKeyError:
                entry = None
            try:
                return self._swap(entry, amount)
            except PreconditionFailedError:
                time.sleep(_pause(attempt))
        raise PreconditionFailedError(self.key, 0)

    def increment(self) -> int:
        """Add one; the value after."""
        return self.add(1)

    def _swap(self, entry: Entry | None, amount: int) -> int:
        value = parse_count(entry) + amount
        if entry is None:
            self.client.put(self.key, str(value), if_absent=True)
        else:
            self.client.put(self.key, str(value), if_revision=entry.mod_revision)
        return value


class AsyncCounter:
    """:class:`Counter` for asyncio."""

    def __init__(self, client: AsyncKeys, key: str) -> None:
        self.client = client
        self.key = key

    async def get(self) -> int:
        """The current value (0 if the key does not exist)."""
        try:
            return parse_count(await self.client.get(self.key))
        except NoSuchKeyError:
            return 0

    async def add(self, amount: int = 1) -> int:
        """Add ``amount`` (negative subtracts); the value after our add."""
        amount = _delta(amount)
        for attempt in range(_MAX_TRIES):
            try:
                entry: Entry | None = await self.client.get(self.key, consistent=attempt > 0)
            except NoSuchKeyError:
                entry = None
            try:
                return await self._swap(entry, amount)
            except PreconditionFailedError:
                await asyncio.sleep(_pause(attempt))
        raise PreconditionFailedError(self.key, 0)

    async def increment(self) -> int:
        """Add one; the value after."""
        return await self.add(1)

    async def _swap(self, entry: Entry | None, amount: int) -> int:
        value = parse_count(entry) + amount
        if entry is None:
            await self.client.put(self.key, str(value), if_absent=True)
        else:
            await self.client.put(self.key, str(value), if_revision=entry.mod_revision)
        return value
