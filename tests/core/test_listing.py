from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from tuco.core.events import Event, EventType
from tuco.core.store import Item, Store


def put(sequence: int, key: str, value: bytes) -> Event:
    return Event(sequence, EventType.PUT, key, value)


def fill(store: Store, keys: list[str]) -> None:
    for sequence, key in enumerate(keys, start=store.last_sequence + 1):
        store.apply(put(sequence, key, key.encode()))


def test_page_lists_keys_with_the_prefix_in_utf8_byte_order() -> None:
    """Keys come in UTF-8 byte order, only those starting with the prefix, with their revisions."""
    store = Store()
    fill(store, ["b/2", "a", "b/1", "b/é", "b/z", "c", "b", "b/\U0001f511"])
    page = store.page("b/", limit=100)
    assert [item.key for item in page.items] == sorted(["b/1", "b/2", "b/z", "b/é", "b/\U0001f511"], key=str.encode)
    assert page.items[0] == Item("b/1", b"b/1", 3, 3, 1)
    assert page.last_key is None
    assert page.revision == 8


def test_pages_continue_after_the_last_key() -> None:
    """limit cuts a page; the next page starts after its last key and the last page has no last key."""
    store = Store()
    fill(store, [f"k{i:02}" for i in range(5)])
    first = store.page("k", limit=2)
    assert [i.key for i in first.items] == ["k00", "k01"]
    assert first.last_key == "k01"
    second = store.page("k", after=first.last_key, limit=2)
    assert [i.key for i in second.items] == ["k02", "k03"]
    third = store.page("k", after=second.last_key, limit=2)
    assert [i.key for i in third.items] == ["k04"]
    assert third.last_key is None


def test_an_empty_prefix_lists_everything_and_an_unknown_prefix_nothing() -> None:
    """The empty prefix is every key; a prefix no key has gives an empty last page."""
    store = Store()
    fill(store, ["a", "b"])
    assert [i.key for i in store.page("", limit=10).items] == ["a", "b"]
    assert store.page("zz", limit=10) == store.page("zz", limit=10)
    assert store.page("zz", limit=10).items == []


def test_a_pinned_page_shows_the_store_as_it_was() -> None:
    """Writes and deletes after the pinned revision are invisible to its later pages."""
    store = Store()
    fill(store, ["a", "b", "c", "d"])
    first = store.page("", limit=2)
    pinned = first.revision
    store.apply(Event(5, EventType.DELETE, "c"))
    store.apply(put(6, "bb", b"new"))
    store.apply(put(7, "d", b"changed"))
    rest = store.page("", after=first.last_key, limit=10, revision=pinned)
    assert [(i.key, i.value, i.mod_revision) for i in rest.items] == [("c", b"c", 3), ("d", b"d", 4)]
    now = store.page("", after="b", limit=10)
    assert [(i.key, i.value) for i in now.items] == [("bb", b"new"), ("d", b"changed")]


keys = st.sampled_from(["a", "a/1", "a/2", "a/é", "b", "b/1", "ab", "\U0001f511", "a/\x00"])
prefixes = st.sampled_from(["", "a", "a/", "b", "zz"])


class ListingAgainstSnapshots(RuleBasedStateMachine):
    """Every paged listing, interleaved with writes, equals the model's state at its pinned revision."""

    listings = Bundle("listings")

    def __init__(self) -> None:
        super().__init__()
        self.store = Store(history_bytes=1 << 20)
        self.model: dict[str, bytes] = {}
        self.states: dict[int, dict[str, bytes]] = {0: {}}
        self.sequence = 0

    def _apply(self, event: Event) -> None:
        assert self.store.apply(event)
        self.states[event.sequence] = dict(self.model)

    @rule(key=keys, value=st.binary(max_size=8))
    def put(self, key: str, value: bytes) -> None:
        self.sequence += 1
        self.model[key] = value
        self._apply(put(self.sequence, key, value))

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.sequence += 1
        self.model.pop(key, None)
        self._apply(Event(self.sequence, EventType.DELETE, key))

    @rule(target=listings, prefix=prefixes, limit=st.integers(1, 3))
    def start_listing(self, prefix: str, limit: int) -> tuple[str, int, int, list[Item], str | None]:
        page = self.store.page(prefix, limit=limit)
        assert page.revision == self.sequence
        return (prefix, limit, page.revision, list(page.items), page.last_key)

    @rule(listing=listings)
    def finish_listing(self, listing: tuple[str, int, int, list[Item], str | None]) -> None:
        prefix, limit, revision, items, last = listing
        items = list(items)
        while last is not None:
            page = self.store.page(prefix, after=last, limit=limit, revision=revision)
            assert page.revision == revision
            assert len(page.items) <= limit
            items.extend(page.items)
            last = page.last_key
        expected = sorted(
            ((k, v) for k, v in self.states[revision].items() if k.startswith(prefix)), key=lambda kv: kv[0].encode()
        )
        assert [(i.key, i.value) for i in items] == expected

    @invariant()
    def current_listing_is_the_model(self) -> None:
        listed = self.store.page("", limit=1000).items
        assert [(i.key, i.value) for i in listed] == sorted(self.model.items(), key=lambda kv: kv[0].encode())
        for item in listed:
            assert self.store.entry(item.key) == (item.value, item.create_revision, item.mod_revision, item.version)


ListingAgainstSnapshots.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_listing_against_snapshots = ListingAgainstSnapshots.TestCase
