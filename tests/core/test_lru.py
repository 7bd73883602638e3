from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tuco.core.lru import LRU


def weigh(key: str, value: bytes) -> int:
    return len(key) + len(value)


def test_least_recently_used_goes_first() -> None:
    """Storing past the bound drops the entry used longest ago, and a find counts as a use."""
    lru: LRU[str, bytes] = LRU(10, weigh)
    lru.store("a", b"1234")  # 5
    lru.store("b", b"1234")  # 10
    assert lru.find("a") == b"1234"
    lru.store("c", b"1")  # 12 > 10: b goes, a was used after it
    assert list(lru) == ["a", "c"]
    assert lru.weight == 7
    assert lru.evictions == 1


def test_peek_and_replace_do_not_count_as_uses() -> None:
    """peek and replace leave the order alone, so a change feed updating an entry does not keep it alive."""
    lru: LRU[str, bytes] = LRU(100, weigh)
    lru.store("a", b"x")
    lru.store("b", b"x")
    assert lru.peek("a") == b"x"
    assert lru.replace("a", b"yy") is True
    assert list(lru) == ["a", "b"]
    assert lru.weight == 2 + 3
    assert lru.replace("absent", b"z") is False
    assert "absent" not in lru


def test_an_entry_heavier_than_the_bound_is_not_stored() -> None:
    """A value that alone outweighs the bound is refused and evicts nothing; replaced by one, the key goes."""
    lru: LRU[str, bytes] = LRU(8, weigh)
    lru.store("a", b"123")
    assert lru.store("big", b"123456") is False
    assert list(lru) == ["a"]
    assert lru.replace("a", b"123456789") is True
    assert list(lru) == []
    assert lru.weight == 0


def test_a_zero_bound_stores_nothing() -> None:
    """TUCO_CACHE_MAX_BYTES=0 is a cache that holds nothing: every read goes to the database."""
    lru: LRU[str, bytes] = LRU(0, weigh)
    assert lru.store("", b"") is True  # weighs nothing
    assert lru.store("a", b"") is False
    assert len(lru) == 1
    with pytest.raises(ValueError, match="negative"):
        LRU(-1, weigh)


class LRUAgainstAModel(RuleBasedStateMachine):
    """The LRU against a list in recency order that drops from the front until the total fits."""

    def __init__(self) -> None:
        super().__init__()
        self.bound = 40
        self.lru: LRU[str, bytes] = LRU(self.bound, weigh)
        self.model: list[tuple[str, bytes]] = []  # least recently used first

    def _index(self, key: str) -> int | None:
        return next((i for i, (k, _) in enumerate(self.model) if k == key), None)

    @rule(key=st.sampled_from("abcdefgh"), value=st.binary(max_size=45))
    def store(self, key: str, value: bytes) -> None:
        at = self._index(key)
        if at is not None:
            del self.model[at]
        stored = weigh(key, value) <= self.bound
        if stored:
            self.model.append((key, value))
            while sum(weigh(k, v) for k, v in self.model) > self.bound:
                del self.model[0]
        assert self.lru.store(key, value) is stored

    @rule(key=st.sampled_from("abcdefgh"))
    def find(self, key: str) -> None:
        at = self._index(key)
        expected = None if at is None else self.model[at][1]
        if at is not None:
            self.model.append(self.model.pop(at))
        assert self.lru.find(key) == expected

    @rule(key=st.sampled_from("abcdefgh"), value=st.binary(max_size=45))
    def replace(self, key: str, value: bytes) -> None:
        at = self._index(key)
        assert self.lru.replace(key, value) is (at is not None)
        if at is None:
            return
        if weigh(key, value) > self.bound:
            del self.model[at]
            return
        self.model[at] = (key, value)
        while sum(weigh(k, v) for k, v in self.model) > self.bound:
            del self.model[0]

    @rule(key=st.sampled_from("abcdefgh"))
    def pop(self, key: str) -> None:
        at = self._index(key)
        expected = None if at is None else self.model.pop(at)[1]
        assert self.lru.pop(key) == expected

    @invariant()
    def same_entries_in_the_same_order_within_the_bound(self) -> None:
        assert list(self.lru) == [k for k, _ in self.model]
        assert [self.lru.peek(k) for k, _ in self.model] == [v for _, v in self.model]
        assert self.lru.weight == sum(weigh(k, v) for k, v in self.model) <= self.bound
        assert len(self.lru) == len(self.model)


TestLRUAgainstAModel = LRUAgainstAModel.TestCase
TestLRUAgainstAModel.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
