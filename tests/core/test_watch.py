"""The pure side of watching: History's cursor reads and the events derived from its changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuco.core.events import Event, EventType
from tuco.core.history import History
from tuco.core.store import Store
from tuco.core.watch import Selector, WatchEvent, events_from_changes, events_from_log
from tuco.errors import HistoryCompactedError

OPS = st.lists(st.tuples(st.booleans(), st.sampled_from(["a", "ab", "b", "a/x"]), st.binary(max_size=4)), max_size=60)


@given(OPS)
def test_derived_events_carry_the_revisions_a_read_showed_right_after_each_change(
    ops: list[tuple[bool, str, bytes]],
) -> None:
    """For every change, the event's create_revision and version equal the store's entry just after it."""
    store = Store()
    seen: list[WatchEvent] = []
    for n, (is_put, key, value) in enumerate(ops, 1):
        store.apply(Event(n, EventType.PUT if is_put else EventType.DELETE, key, value))
        expected: WatchEvent
        if is_put:
            entry = store.entry(key)
            expected = WatchEvent(n, "put", key, value, entry.create_revision, entry.version)
        else:
            expected = WatchEvent(n, "delete", key, b"", None, None)
        seen.append(expected)
    assert events_from_changes(store.history.changes_after(0, len(ops) + 1), Selector()) == seen


def test_selectors_match_a_prefix_or_exactly_one_key() -> None:
    """A prefix selector takes every key starting with it; a key selector only that key."""
    store = Store()
    for n, key in enumerate(["a", "ab", "b", "a"], 1):
        store.apply(Event(n, EventType.PUT, key, b"v"))
    changes = store.history.changes_after(0, 10)
    assert [e.revision for e in events_from_changes(changes, Selector("a"))] == [1, 2, 4]
    assert [e.revision for e in events_from_changes(changes, Selector(key="a"))] == [1, 4]
    assert [e.revision for e in events_from_changes(changes, Selector())] == [1, 2, 3, 4]


def test_changes_after_reads_from_a_cursor_in_batches_and_refuses_what_was_dropped() -> None:
    """changes_after(r, n) gives up to n changes after r; below the oldest retained it raises with the oldest."""
    history = History(max_bytes=3 * 400)
    for n in range(1, 11):
        history.record(n, 1, "k", b"v", None)
    oldest = history.oldest_revision
    assert oldest == 7
    assert [c[0] for c in history.changes_after(oldest, 2)] == [8, 9]
    assert [c[0] for c in history.changes_after(9, 100)] == [10]
    assert history.changes_after(10, 100) == []
    with pytest.raises(HistoryCompactedError) as caught:
        history.changes_after(oldest - 1, 1)
    assert caught.value.oldest == 7


def test_events_read_back_from_a_log_skip_other_types_and_keep_what_the_log_knows() -> None:
    """Logged events become watch events; without recorded revisions a PUT carries None for them."""
    events = [
        Event(1, EventType.PUT, "a", b"1"),
        Event(2, EventType.DELETE, "a"),
        Event(3, EventType.PUT, "b", b"2"),
        Event(4, EventType.PUT, "a", b"3", 4, 1),
    ]
    assert events_from_log(events, Selector("a")) == [
        WatchEvent(1, "put", "a", b"1", None, None),
        WatchEvent(2, "delete", "a", b"", None, None),
        WatchEvent(4, "put", "a", b"3", 4, 1),
    ]
