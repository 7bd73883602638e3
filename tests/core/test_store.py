from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tuco.core.events import Event, EventType
from tuco.core.store import Store
from tuco.errors import NoSuchKeyError, TucoError


def put(sequence: int, key: str, value: bytes) -> Event:
    return Event(sequence, EventType.PUT, key, value)


def delete(sequence: int, key: str) -> Event:
    return Event(sequence, EventType.DELETE, key)


def test_get_missing_key_raises_no_such_key_error() -> None:
    """Reading an absent key raises NoSuchKeyError, which callers may also catch as KeyError."""
    store = Store()
    with pytest.raises(NoSuchKeyError) as info:
        store.get("absent")
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, TucoError)
    assert info.value.args == ("absent",)
    assert str(info.value) == "no such key: 'absent'"


def test_new_store_is_empty() -> None:
    """A fresh store holds nothing and has applied no event."""
    store = Store()
    assert len(store) == 0
    assert store.last_sequence == 0
    assert store.snapshot() == {}
    assert list(store.items()) == []


def test_put_then_get_returns_the_value() -> None:
    """Applying a PUT makes the key readable with exactly that value."""
    store = Store()
    assert store.apply(put(1, "k", b"v")) is True
    assert store.get("k") == b"v"
    assert "k" in store
    assert len(store) == 1
    assert store.last_sequence == 1


def test_put_overwrites_the_previous_value() -> None:
    """A second PUT of the same key replaces its value."""
    store = Store()
    store.apply(put(1, "k", b"old"))
    store.apply(put(2, "k", b"new"))
    assert store.snapshot() == {"k": b"new"}


def test_put_is_idempotent() -> None:
    """PUTting the same value twice leaves the same state as once."""
    store = Store()
    store.apply(put(1, "k", b"v"))
    store.apply(put(2, "k", b"v"))
    assert store.snapshot() == {"k": b"v"}
    assert store.last_sequence == 2


def test_delete_removes_the_key() -> None:
    """Applying a DELETE makes the key absent again."""
    store = Store()
    store.apply(put(1, "k", b"v"))
    assert store.apply(delete(2, "k")) is True
    assert "k" not in store
    with pytest.raises(NoSuchKeyError):
        store.get("k")
    assert store.last_sequence == 2


def test_delete_of_a_missing_key_is_a_no_op_that_advances_the_sequence() -> None:
    """Deleting an absent key (or deleting twice) succeeds and only advances last_sequence."""
    store = Store()
    assert store.apply(delete(1, "never")) is True
    store.apply(put(2, "k", b"v"))
    store.apply(delete(3, "k"))
    assert store.apply(delete(4, "k")) is True
    assert store.snapshot() == {}
    assert store.last_sequence == 4


def test_empty_value_is_stored_not_treated_as_absent() -> None:
    """An empty value is a value: the key exists and reads back as b''."""
    store = Store()
    store.apply(put(1, "k", b""))
    assert "k" in store
    assert store.get("k") == b""


def test_apply_skips_events_at_or_below_last_sequence() -> None:
    """An event whose sequence is not newer than the last applied one is skipped and apply returns False."""
    store = Store()
    store.apply(put(5, "k", b"five"))
    assert store.apply(put(5, "k", b"again")) is False
    assert store.apply(put(3, "k", b"older")) is False
    assert store.apply(delete(4, "k")) is False
    assert store.snapshot() == {"k": b"five"}
    assert store.last_sequence == 5
    assert store.apply(put(6, "k", b"six")) is True
    assert store.snapshot() == {"k": b"six"}


def test_apply_batch_matches_apply_one_by_one() -> None:
    """apply_batch leaves exactly the state that applying each event in turn leaves, skipping old ones."""
    events = [put(1, "a", b"1"), put(2, "b", b"2"), delete(3, "a"), put(2, "stale", b"x"), put(4, "b", b"4")]
    one_by_one = Store()
    for event in events:
        one_by_one.apply(event)
    batched = Store()
    batched.apply(put(1, "a", b"1"))
    batched.apply_batch(events)
    assert batched.snapshot() == one_by_one.snapshot() == {"b": b"4"}
    assert batched.last_sequence == one_by_one.last_sequence == 4


def test_apply_batch_of_nothing_changes_nothing() -> None:
    """An empty batch leaves the state and last_sequence alone."""
    store = Store()
    store.apply(put(3, "k", b"v"))
    store.apply_batch([])
    assert store.snapshot() == {"k": b"v"}
    assert store.last_sequence == 3


def test_items_is_a_snapshot_safe_to_iterate_while_mutating() -> None:
    """items() iterates over a copy, so applying events during iteration does not break it."""
    store = Store()
    store.apply(put(1, "a", b"1"))
    store.apply(put(2, "b", b"2"))
    seen = []
    for sequence, (key, value) in enumerate(store.items(), start=3):
        seen.append((key, value))
        store.apply(delete(sequence, key))
    assert seen == [("a", b"1"), ("b", b"2")]
    assert len(store) == 0


def test_snapshot_is_a_copy() -> None:
    """Mutating a snapshot does not change the store."""
    store = Store()
    store.apply(put(1, "k", b"v"))
    snapshot = store.snapshot()
    snapshot["other"] = b"x"
    assert store.snapshot() == {"k": b"v"}


# A small pool of keys makes overwrites and deletes of existing keys common;
# arbitrary text keeps the odd ones (spaces, newlines, NUL, emoji) in play.
keys = st.one_of(st.sampled_from(["a", "b", " ", "a/b", "\n", "\x00", "🔑"]), st.text())
values = st.binary(max_size=64)


class StoreAgainstDict(RuleBasedStateMachine):
    """The store behaves exactly like a dict under any sequence of puts and deletes."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.model: dict[str, bytes] = {}
        self.sequence = 0

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    @rule(key=keys, value=values)
    def put(self, key: str, value: bytes) -> None:
        assert self.store.apply(put(self._next(), key, value)) is True
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key: str) -> None:
        assert self.store.apply(delete(self._next(), key)) is True
        self.model.pop(key, None)

    @rule(key=keys, value=values)
    def replay_an_old_event(self, key: str, value: bytes) -> None:
        if self.sequence:
            assert self.store.apply(put(self.sequence, key, value)) is False

    @rule(batch=st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=5))
    def apply_batch(self, batch: list[tuple[str, bytes | None]]) -> None:
        events = []
        for key, value in batch:
            if value is None:
                events.append(delete(self._next(), key))
                self.model.pop(key, None)
            else:
                events.append(put(self._next(), key, value))
                self.model[key] = value
        # A batch may start with events already applied (a replay overlapping what is there).
        stale = [put(self.sequence - len(events), "stale", b"x")] if self.sequence > len(events) else []
        self.store.apply_batch(stale + events)

    @rule(key=keys)
    def get(self, key: str) -> None:
        if key in self.model:
            assert self.store.get(key) == self.model[key]
        else:
            with pytest.raises(NoSuchKeyError):
                self.store.get(key)

    @invariant()
    def same_contents(self) -> None:
        assert self.store.snapshot() == self.model
        assert len(self.store) == len(self.model)
        assert self.store.last_sequence == self.sequence


StoreAgainstDict.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_store_against_dict = StoreAgainstDict.TestCase


def test_an_entry_holds_one_int_object_for_both_revisions_of_a_new_key() -> None:
    """Memory per key: a new key's create and mod revisions are one int object, by apply and by replay alike.

    Pure Python shares the event's int; the compiled build would box one per field (about 30 bytes more a
    key at a million keys) unless the store hands the event's own object on. Read from the entry itself:
    ``record`` returns a copy the compiled build boxes afresh.
    """
    big = 10**6  # past the small ints CPython caches
    applied, replayed = Store(), Store()
    applied.apply(Event(big, EventType.PUT, "k", b"v"))
    replayed.apply_batch([Event(big, EventType.PUT, "k", b"v"), Event(big + 1, EventType.PUT, "j", b"w")])
    for store, key in ((applied, "k"), (replayed, "k"), (replayed, "j")):
        _, create, mod, _ = store._data[key]
        assert create == mod and create is mod, key
    replayed.apply_batch([Event(big + 2, EventType.PUT, "k", b"x")])
    assert replayed._data["k"][1] is not replayed._data["k"][2]  # created at big, changed at big + 2
