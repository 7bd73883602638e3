from __future__ import annotations

import pytest

from tests.core.test_store import delete, put
from tuco.core.events import ABSENT, EXISTS, Entry, Event, EventType, Precondition
from tuco.core.history import CHANGE_OVERHEAD_BYTES, History
from tuco.core.store import Store
from tuco.errors import HistoryCompactedError, NoSuchKeyError


def test_revisions_follow_etcd_create_mod_and_version() -> None:
    """A key's create_revision is the write that created it, mod_revision the last write, version the count."""
    store = Store()
    store.apply(put(1, "k", b"a"))
    store.apply(put(2, "other", b"x"))
    store.apply(put(3, "k", b"b"))
    assert store.entry("k") == Entry(b"b", 1, 3, 2)
    assert store.entry("other") == Entry(b"x", 2, 2, 1)
    assert store.mod_revision("k") == 3


def test_deletion_resets_the_revisions_of_a_key() -> None:
    """After a delete the key is absent (mod_revision 0); a new PUT creates it afresh at version 1."""
    store = Store()
    store.apply(put(1, "k", b"a"))
    store.apply(delete(2, "k"))
    assert store.mod_revision("k") == 0
    with pytest.raises(NoSuchKeyError):
        store.entry("k")
    store.apply(put(3, "k", b"c"))
    assert store.entry("k") == Entry(b"c", 3, 3, 1)


def test_replay_derives_the_same_revisions_as_applying_one_by_one() -> None:
    """apply_batch (replay) computes create_revision, mod_revision and version exactly as apply does."""
    events = [put(1, "a", b"1"), put(2, "a", b"2"), delete(3, "a"), put(4, "a", b"4"), put(5, "b", b"5")]
    one = Store()
    for event in events:
        one.apply(event)
    replayed = Store()
    replayed.apply_batch(events)
    for key in ("a", "b"):
        assert replayed.entry(key) == one.entry(key)
    assert replayed.entry("a") == Entry(b"4", 4, 4, 1)


def test_events_that_carry_revisions_are_taken_as_they_are() -> None:
    """A compacted or bootstrapped event carries create_revision and version, and the store keeps them."""
    store = Store()
    store.apply_batch([Event(7, EventType.PUT, "k", b"v", 3, 5)])
    assert store.entry("k") == Entry(b"v", 3, 7, 5)
    store.apply(put(8, "k", b"w"))
    assert store.entry("k") == Entry(b"w", 3, 8, 6)


@pytest.mark.parametrize(
    ("precondition", "current", "holds"),
    [
        (Precondition(5), 5, True),
        (Precondition(5), 4, False),
        (Precondition(5), 0, False),
        (EXISTS, 9, True),
        (EXISTS, 0, False),
        (ABSENT, 0, True),
        (ABSENT, 1, False),
    ],
)
def test_precondition_holds_exactly_when_the_revision_matches(
    precondition: Precondition, current: int, holds: bool
) -> None:
    """If-Match "n" needs mod_revision n, If-Match * any existing key, If-None-Match * an absent one."""
    assert precondition.holds(current) is holds


def test_history_rebuilds_the_state_at_a_retained_revision() -> None:
    """state_at(R) gives, for each key changed after R, its entry at R (None where it was absent)."""
    store = Store()
    store.apply(put(1, "a", b"1"))
    store.apply(put(2, "a", b"2"))
    store.apply(put(3, "b", b"3"))
    store.apply(delete(4, "a"))
    assert store.history.state_at(1) == {"a": Entry(b"1", 1, 1, 1), "b": None}
    assert store.history.state_at(3) == {"a": Entry(b"2", 1, 2, 2)}
    assert store.history.state_at(4) == {}
    assert store.history.state_at(0) == {"a": None, "b": None}


def test_history_drops_the_oldest_changes_beyond_its_byte_bound() -> None:
    """Past max_bytes the oldest changes go, and asking for a revision before them raises with the oldest kept."""
    history = History(1000, revision=0)
    value = b"x" * 300
    store_entry = Entry(value, 1, 1, 1)
    for sequence in range(1, 11):
        history.record(sequence, 1, "k", value, store_entry)
    assert history.retained_bytes <= 1000
    oldest = history.oldest_revision
    assert oldest == 10 - len(history)
    assert len(history) == 1000 // (CHANGE_OVERHEAD_BYTES + 1 + 300)
    with pytest.raises(HistoryCompactedError) as info:
        history.state_at(oldest - 1)
    assert info.value.oldest == oldest
    assert info.value.code == "history_compacted"
    assert list(history.state_at(oldest)) == ["k"]


def test_replay_keeps_no_history_before_the_replayed_revision() -> None:
    """After replay only the replayed revision and later ones can be listed."""
    store = Store()
    store.apply_batch([put(1, "a", b"1"), put(2, "b", b"2")])
    assert store.history.oldest_revision == 2
    with pytest.raises(HistoryCompactedError):
        store.page("", limit=10, revision=1)
    store.apply(put(3, "a", b"3"))
    page = store.page("", limit=10, revision=2)
    assert [(item.key, item.value) for item in page.items] == [("a", b"1"), ("b", b"2")]


def test_a_gap_in_recorded_revisions_restarts_the_history() -> None:
    """A change that does not follow the last one makes everything before it unservable."""
    history = History(1 << 20)
    history.record(1, 1, "a", b"1", None)
    history.record(5, 1, "a", b"5", (b"1", 1, 1, 1))
    assert history.oldest_revision == 4
    assert len(history) == 1
