"""The history's bound is kept in small steps, and what it drops is freed as it is dropped.

A full history used to drop 1/16 of its bound at once and keep the dropped
changes in its list until half of the list was stale: under 40,000 writes/s
that freed ~40,000 changes in one go about once a second, a 15-20 ms stall of
the event loop (relaxed PUT p99 19 ms, 3 ms with the history off).
"""

from __future__ import annotations

import sys

from tuco.core.history import CHANGE_OVERHEAD_BYTES, History


def _fill(history: History, first: int, count: int, value: bytes = b"v" * 64) -> None:
    for sequence in range(first, first + count):
        history.record(sequence, 1, f"k{sequence % 100:02d}", value, (value, 1, sequence - 1, 1))


def test_a_full_history_drops_at_most_a_64th_of_its_bound_at_a_time() -> None:
    """Past the bound, each drop keeps at least 63/64 of it: a drop costs a few hundred changes, not thousands."""
    per_change = CHANGE_OVERHEAD_BYTES + 3 + 64
    history = History(max_bytes=per_change * 6400)
    _fill(history, 1, 6400)
    assert history.retained_bytes == per_change * 6400
    _fill(history, 6401, 1)
    assert per_change * 6400 * 63 // 64 <= history.retained_bytes < per_change * 6400
    assert history.oldest_revision == 6401 - len(history)


def test_a_dropped_change_is_freed_when_it_is_dropped() -> None:
    """The replaced value a dropped change held is released at the drop, not in one burst much later."""
    per_change = CHANGE_OVERHEAD_BYTES + 3 + 64
    history = History(max_bytes=per_change * 6400)
    held = bytes(range(64))
    baseline = sys.getrefcount(held)
    history.record(1, 1, "k01", held, (held, 1, 0, 1))
    assert sys.getrefcount(held) == baseline + 2
    _fill(history, 2, 6400)  # the first change is among the dropped ones now
    assert history.oldest_revision >= 1
    assert sys.getrefcount(held) == baseline


def test_state_and_changes_stay_right_across_many_drops() -> None:
    """After thousands of drops the retained changes are exactly the newest ones, readable by revision."""
    per_change = CHANGE_OVERHEAD_BYTES + 3 + 64
    history = History(max_bytes=per_change * 1000)
    _fill(history, 1, 50_000)
    oldest = history.oldest_revision
    assert 50_000 - 1000 <= oldest < 50_000 - 1000 + 1000 // 64 + 1
    changes = history.changes_after(oldest, 5)
    assert [c[0] for c in changes] == [oldest + 1, oldest + 2, oldest + 3, oldest + 4, oldest + 5]
    assert set(history.state_at(49_990)) == {f"k{n % 100:02d}" for n in range(49_991, 50_001)}


def test_recorded_one_at_a_time_the_history_always_holds_its_newest_changes_and_never_empties() -> None:
    """After every one of 50,000 records past the bound: the newest changes within it, the oldest never going back.

    A drop done in the wrong order (the list cut before the first revision moves)
    empties the whole history about every twice its bound, cancelling watchers and
    failing pinned listings; the state at the end alone would not show it.
    """
    per_change = CHANGE_OVERHEAD_BYTES + 3 + 64
    bound = 1000
    history = History(max_bytes=per_change * bound)
    value = b"v" * 64
    oldest = 0
    for sequence in range(1, 50_001):
        history.record(sequence, 1, f"k{sequence % 100:02d}", value, (value, 1, sequence - 1, 1))
        assert oldest <= history.oldest_revision == sequence - len(history)
        oldest = history.oldest_revision
        if sequence > bound:
            assert len(history) >= bound - bound // 64 - 1, f"only {len(history)} changes kept at {sequence}"
            assert history.retained_bytes <= per_change * bound
    assert [c[0] for c in history.changes_after(oldest, bound)] == list(range(oldest + 1, 50_001))
