"""The recent changes to the store, bounded in bytes.

Each change keeps the key's entry from just before it, so the state at any
retained revision R is the current state with the changes after R undone:
that is how every page of a listing shows one revision without copying the
store, and (next) where watchers resume from. Older changes are dropped
first; asking for a revision before the oldest retained one raises
:class:`~tuco.errors.HistoryCompactedError` with the oldest that can be served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Final

from tuco.core._untrack import untracked as _untracked
from tuco.core.events import Entry
from tuco.errors import HistoryCompactedError

__all__ = ["CHANGE_OVERHEAD_BYTES", "TXN_CODE", "AgedHistory", "Change", "Group", "History", "flatten"]

# What a retained change costs beyond its key's and its replaced value's bytes:
# the change, event and entry tuples, their integers, the bytes object header
# and the list slot (measured with tracemalloc: about 305 bytes).
CHANGE_OVERHEAD_BYTES: Final = 320


_new: Final = tuple.__new__

Change = tuple[int, int, str, bytes, Any, Any]
"""A retained change: (revision, type code 1 PUT / 2 DELETE, key, value, the replaced entry or None, origin).

The origin (:class:`~tuco.core.origin.Origin`, None where unknown) is who made
the change; a transaction's writes carry theirs on the group only.

A transaction's writes are one change of code :data:`TXN_CODE` (key ``""``) whose
last field is the tuple of its writes' changes, all at its revision: a revision
is still one change, so cursors and offsets stay revision arithmetic.
"""

TXN_CODE: Final = 9


def flatten(changes: Iterable[Change]) -> Iterator[Change]:
    """The changes with each transaction's replaced by the changes of its writes."""
    for change in changes:
        if change[1] == TXN_CODE:
            origin = change[5]
            if origin is None:
                yield from change[4]
            else:
                for part in change[4]:
                    yield (part[0], part[1], part[2], part[3], part[4], origin)
        else:
            yield change


def _cost(change: Change) -> int:
    """What a change costs the bound: its key's and replaced value's bytes and the overhead (a group: its parts')."""
    if change[1] == TXN_CODE:
        return CHANGE_OVERHEAD_BYTES + sum(_cost(part) for part in change[4])
    previous = change[4]
    return CHANGE_OVERHEAD_BYTES + len(change[2]) + (len(previous[0]) if previous is not None else 0)


class History:
    """Changes with consecutive revisions, newest last, within ``max_bytes``.

    Each change is kept as a flat tuple of plain values (revision, type code,
    key, value, the replaced entry's tuple): the cyclic garbage collector stops
    tracking such tuples, so a full history costs no collection time, and
    recording one is a single append on every write.
    """

    __slots__ = ("_bytes", "_changes", "_first", "_moments", "_start", "max_age_ms", "max_bytes")

    def __init__(self, max_bytes: int, *, revision: int = 0, max_age_ms: int = 0) -> None:
        self.max_bytes = max_bytes
        self.max_age_ms = max_age_ms
        """Drop changes made this long (ms, by their origins' moments) before the newest; 0: no age bound."""
        self._changes: list[Change] = []
        self._start = 0  # index of the oldest retained change in _changes
        self._first = revision + 1  # revision of the change at _start (or of the next one)
        self._bytes = 0
        self._moments: deque[tuple[int, int]] = deque()  # (the last revision made at a moment, that moment)

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
        self._moments.clear()

    def record(
        self,
        sequence: int,
        code: int,
        key: str,
        value: bytes,
        previous: tuple[bytes, int, int, int] | None,
        origin: Any = None,
    ) -> None:
        """Keep the change at revision ``sequence`` (the next one) and the entry it replaced.

        ``code`` is the event type's number. Lease records (codes 4 to 6) change
        no key: they are kept as placeholders (key ``""``, no previous entry), so
        revisions stay consecutive. Drops the oldest changes beyond the bound.
        """
        if sequence != self._first + len(self._changes) - self._start:
            self.reset(sequence - 1)  # a gap: nothing before it can be rebuilt
        change = (sequence, code, key, value, previous, origin)
        untrack = _untracked  # see tuco.core._untrack
        self._changes.append(change if untrack is None else untrack(change))
        self._bytes += CHANGE_OVERHEAD_BYTES + len(key) + (len(previous[0]) if previous is not None else 0)
        if self._bytes > self.max_bytes:
            self._drop_oldest()

    def record_group(self, sequence: int, changes: list[Change], origin: Any = None) -> None:
        """Keep a transaction's changes (all at revision ``sequence``, the next one) as one change."""
        if sequence != self._first + len(self._changes) - self._start:
            self.reset(sequence - 1)
        group = (sequence, TXN_CODE, "", b"", tuple(changes), origin)
        self._changes.append(group)
        self._bytes += _cost(group)
        if self._bytes > self.max_bytes:
            self._drop_oldest()

    def _age(self, sequence: int, at: int) -> None:
        """Note that revision ``sequence`` was made at ``at``; drop the changes made ``max_age_ms`` before it.

        A change without a moment (replayed from a log written before origins)
        goes with the first dated change after it: it is at least as old.
        """
        moments = self._moments
        if moments and moments[-1][1] == at:
            moments[-1] = (sequence, at)  # a batch's changes share their moment: one entry for them
        else:
            moments.append((sequence, at))
        cutoff = at - self.max_age_ms
        through = 0
        while moments and moments[0][1] < cutoff:
            through = moments.popleft()[0]
        if through >= self._first:
            self._drop_through(through)

    def _drop_through(self, revision: int) -> None:
        """Drop every retained change up to revision ``revision``, freeing each as it goes."""
        changes: list[Change | None] = self._changes  # type: ignore[assignment]  # slots before _start are None
        start = self._start
        end = min(start + revision + 1 - self._first, len(changes))
        size = self._bytes
        while start < end:
            size -= _cost(changes[start])  # type: ignore[arg-type]  # at and after _start: a change
            changes[start] = None
            start += 1
        self._bytes = size
        self._cut(start)

    def _drop_oldest(self) -> None:
        """Drop the oldest changes down to 63/64 of the bound, freeing each as it goes.

        Small steps, each freed at once: dropping 1/16 and freeing the list's
        stale half in one ``del`` stalled the loop 15-20 ms a second under 40,000
        writes/s. The stale slots hold ``None`` until the list is cut, which then
        only moves pointers.
        """
        changes: list[Change | None] = self._changes  # type: ignore[assignment]  # slots before _start are None
        start = self._start
        size = self._bytes
        target = self.max_bytes - (self.max_bytes >> 6)
        while size > target and start < len(changes):
            size -= _cost(changes[start])  # type: ignore[arg-type]  # at and after _start: a change
            changes[start] = None
            start += 1
        self._bytes = size
        self._cut(start)

    def _cut(self, start: int) -> None:
        """Make ``start`` the index of the oldest retained change; cut the list's stale head once it is most of it."""
        self._first += start - self._start
        changes = self._changes
        if start > 1024 and start * 2 > len(changes):
            del changes[:start]
            start = 0
        self._start = start

    def state_at(self, revision: int) -> dict[str, Entry | None]:
        """For every key changed after ``revision``: its entry at ``revision`` (``None``: absent then)."""
        if revision < self.oldest_revision:
            raise HistoryCompactedError(self.oldest_revision)
        before: dict[str, Entry | None] = {}
        begin = self._start + (revision + 1 - self._first)
        for _, code, key, _, previous, _ in flatten(islice(self._changes, begin, None)):
            if code <= 2 and key not in before:  # codes above 2 are lease records: no key changed
                before[key] = _new(Entry, previous) if previous is not None else None
        return before

    def changes_of(self, key: str, before: int, limit: int) -> list[Change]:
        """Up to ``limit`` retained changes of ``key`` (PUT or DELETE) below revision ``before``, newest first.

        Raises :class:`HistoryCompactedError` when no retained revision is below
        ``before`` while older ones were dropped: the history no longer reaches.
        A scan of the retained changes: bounded by the history's own bound.
        """
        if before <= self._first and self.oldest_revision > 0:
            raise HistoryCompactedError(self.oldest_revision)
        changes = self._changes
        found: list[Change] = []
        index = min(len(changes), self._start + before - self._first) - 1
        while index >= self._start and len(found) < limit:
            change = changes[index]
            if change[1] == TXN_CODE:
                found.extend(part for part in reversed(list(flatten((change,)))) if part[2] == key)
            elif change[2] == key and change[1] <= 2:
                found.append(change)
            index -= 1
        return found[:limit]

    # -- watching ---------------------------------------------------------------

    def changes_after(self, revision: int, limit: int) -> list[Change]:
        """Up to ``limit`` retained changes after ``revision``, oldest first: where a watcher's cursor reads.

        A slice of the retained list, no copy of the values. Raises
        :class:`HistoryCompactedError` if changes after ``revision`` were already dropped.
        """
        if revision < self.oldest_revision:
            raise HistoryCompactedError(self.oldest_revision)
        begin = self._start + (revision + 1 - self._first)
        return self._changes[begin : begin + limit]


class AgedHistory(History):
    """A :class:`History` with an age bound too (``max_age_ms`` > 0): apart, so the plain one pays nothing for it."""

    __slots__ = ()

    def record(
        self,
        sequence: int,
        code: int,
        key: str,
        value: bytes,
        previous: tuple[bytes, int, int, int] | None,
        origin: Any = None,
    ) -> None:
        super().record(sequence, code, key, value, previous, origin)
        if origin is not None:
            self._age(sequence, origin[1])

    def record_group(self, sequence: int, changes: list[Change], origin: Any = None) -> None:
        super().record_group(sequence, changes, origin)
        if origin is not None:
            self._age(sequence, origin[1])


class Group(History):
    """Collects the changes of one transaction's writes as the store applies them, for :meth:`History.record_group`."""

    def __init__(self) -> None:
        super().__init__(0)
        self.changes: list[Change] = []

    def record(
        self,
        sequence: int,
        code: int,
        key: str,
        value: bytes,
        previous: tuple[bytes, int, int, int] | None,
        origin: Any = None,
    ) -> None:
        self.changes.append((sequence, code, key, value, previous, origin))
