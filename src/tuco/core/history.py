"""The recent changes to the store, bounded in bytes.

Each change keeps the key's entry from just before it, so the state at any
retained revision R is the current state with the changes after R undone:
that is how every page of a listing shows one revision without copying the
store, and (next) where watchers resume from. Older changes are dropped
first; asking for a revision before the oldest retained one raises
:class:`~tuco.errors.HistoryCompactedError` with the oldest that can be served.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import NamedTuple

from tuco.core.events import Entry, Event
from tuco.errors import HistoryCompactedError

__all__ = ["CHANGE_OVERHEAD_BYTES", "Change", "History"]

# What a retained change costs beyond its key's and its replaced value's bytes:
# the change, event and entry tuples, their integers, the bytes object header
# and the list slot (measured with tracemalloc: about 305 bytes).
CHANGE_OVERHEAD_BYTES = 320


class Change(NamedTuple):
    """One applied event and the key's entry before it (``None``: the key was absent)."""

    event: Event
    previous: Entry | None


class History:
    """Changes with consecutive revisions, newest last, within ``max_bytes``."""

    __slots__ = ("_bytes", "_changes", "_first", "_start", "max_bytes")

    def __init__(self, max_bytes: int, *, revision: int = 0) -> None:
        self.max_bytes = max_bytes
        self._changes: list[Change] = []
        self._start = 0  # index of the oldest retained change in _changes
        self._first = revision + 1  # revision of the change at _start (or of the next one)
        self._bytes = 0

    @property
    def oldest_revision(self) -> int:
        """The oldest revision whose state can still be rebuilt."""
        return self._first - 1

    @property
    def retained_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._changes) - self._start

    def reset(self, revision: int) -> None:
        """Forget every change: only the state at ``revision`` (the current one) can be served."""
        self._changes = []
        self._start = 0
        self._first = revision + 1
        self._bytes = 0

    def record(self, event: Event, previous: Entry | None) -> None:
        """Keep ``event`` (the next revision) and what it replaced; drop the oldest beyond the bound."""
        if event.sequence != self._first + len(self):
            self.reset(event.sequence - 1)  # a gap: nothing before it can be rebuilt
        size = CHANGE_OVERHEAD_BYTES + len(event.key) + (len(previous.value) if previous is not None else 0)
        if size > self.max_bytes:
            self.reset(event.sequence)
            return
        self._changes.append(Change(event, previous))
        self._bytes += size
        while self._bytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        change = self._changes[self._start]
        previous = change.previous
        self._bytes -= CHANGE_OVERHEAD_BYTES + len(change.event.key) + (len(previous.value) if previous else 0)
        self._start += 1
        self._first += 1
        if self._start > 1024 and self._start * 2 > len(self._changes):
            del self._changes[: self._start]
            self._start = 0

    def changes_after(self, revision: int) -> Iterator[Change]:
        """The retained changes after ``revision``, oldest first.

        Raises :class:`HistoryCompactedError` if changes after ``revision`` were already dropped.
        """
        if revision < self.oldest_revision:
            raise HistoryCompactedError(self.oldest_revision)
        begin = self._start + (revision + 1 - self._first)
        return islice(self._changes, begin, None)

    def state_at(self, revision: int) -> dict[str, Entry | None]:
        """For every key changed after ``revision``: its entry at ``revision`` (``None``: absent then)."""
        before: dict[str, Entry | None] = {}
        for event, previous in self.changes_after(revision):
            if event.key not in before:
                before[event.key] = previous
        return before
