"""Deadlines and leases in the pure core: the store, its expiry bookkeeping, the codec, the log-order judge."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuco.core.codec import (
    FORMAT_VERSION,
    RecordDecoder,
    encode_entry,
    encode_event,
    encode_header,
    encode_lease_entry,
    encode_record,
)
from tuco.core.events import Entry, Event, EventType, Expiry, Lifetime, Precondition
from tuco.core.store import ExpiringEntry, Item, Store
from tuco.errors import LeaseNotFoundError, NoSuchKeyError, PreconditionFailedError
from tuco.log.batching import Mutation, sequence_batch

PUT, DELETE = EventType.PUT, EventType.DELETE
GRANT, KEEPALIVE, REVOKE = EventType.LEASE_GRANT, EventType.LEASE_KEEPALIVE, EventType.LEASE_REVOKE


class Clock:
    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def store_at(clock: Clock) -> Store:
    return Store(now=clock)


def test_a_key_with_a_deadline_is_read_until_it_and_never_at_or_after_it() -> None:
    """lookup raises ExpiringEntry (entry and deadline) before the deadline, NoSuchKeyError from it on."""
    clock = Clock()
    store = store_at(clock)
    store.apply(Event(1, PUT, "k", b"v", lifetime=Lifetime(2_000)))
    with pytest.raises(ExpiringEntry) as found:
        store.lookup("k")
    assert (found.value.entry, found.value.expires_at) == (Entry(b"v", 1, 1, 1), 2_000)
    assert store.entry("k") == Entry(b"v", 1, 1, 1)
    assert store.get("k") == b"v"
    clock.now = 1_999
    assert store.entry("k") == Entry(b"v", 1, 1, 1)
    clock.now = 2_000
    for read in (store.lookup, store.entry, store.get):
        with pytest.raises(NoSuchKeyError):
            read("k")
    assert store.mod_revision("k") == 1  # still there for the log, until its DELETE is written
    assert "k" in store and len(store) == 1


def test_read_is_lookup_without_raising() -> None:
    """read returns what lookup returns or raises: the Entry, the ExpiringEntry, or None for absent and expired."""
    clock = Clock()
    store = store_at(clock)
    store.apply(Event(1, PUT, "k", b"v", lifetime=Lifetime(2_000)))
    store.apply(Event(2, PUT, "plain", b"p"))
    assert store.read("plain") == Entry(b"p", 2, 2, 1) == store.lookup("plain")
    assert type(store.read("plain")) is Entry
    expiring = store.read("k")
    assert isinstance(expiring, ExpiringEntry)
    assert (expiring.entry, expiring.expires_at) == (Entry(b"v", 1, 1, 1), 2_000)
    assert store.read("absent") is None
    clock.now = 2_000
    assert store.read("k") is None


def test_keys_without_a_deadline_stay_in_the_plain_map() -> None:
    """A key without a deadline is looked up as before: lookup returns its Entry; it has no expiry."""
    store = Store()
    store.apply(Event(1, PUT, "k", b"v"))
    assert store.lookup("k") == Entry(b"v", 1, 1, 1)
    assert (store.has_deadline("k"), store.key_expiry("k")) == (False, None)
    with pytest.raises(NoSuchKeyError):
        store.lookup("absent")


def test_a_plain_put_clears_a_deadline_and_keeps_the_revisions() -> None:
    """PUT without a lifetime over a key with one makes it permanent; create_revision and version continue."""
    clock = Clock()
    store = store_at(clock)
    store.apply(Event(1, PUT, "k", b"a", lifetime=Lifetime(1_500)))
    store.apply(Event(2, PUT, "k", b"b"))
    clock.now = 10_000
    assert store.lookup("k") == Entry(b"b", 1, 2, 2)
    assert store.key_expiry("k") is None
    assert store.expiry_state() == ({}, {}, [])
    store.apply(Event(3, PUT, "k", b"c", lifetime=Lifetime(20_000)))
    assert store.entry("k") == Entry(b"c", 1, 3, 3)
    store.apply(Event(4, DELETE, "k"))
    assert "k" not in store and store.expiry_state() == ({}, {}, [])


def test_leases_move_their_keys_deadlines_and_revoking_expires_what_is_left() -> None:
    """A leased key expires with its lease; a keepalive moves it; a revoke with keys still on it expires them now."""
    clock = Clock()
    store = store_at(clock)
    store.apply(Event(1, GRANT, "", lifetime=Lifetime(5_000, 1, 4_000)))
    store.apply(Event(2, PUT, "a", b"1", lifetime=Lifetime(0, 1)))
    store.apply(Event(3, PUT, "b", b"2", lifetime=Lifetime(0, 1)))
    assert (store.lease(1), store.key_expiry("a"), store.lease_of("a")) == ((4_000, 5_000), 5_000, 1)
    assert store.leases.get(1) is not None and store.leases.get(1).keys == {"a", "b"}  # type: ignore[union-attr]
    store.apply(Event(4, KEEPALIVE, "", lifetime=Lifetime(9_000, 1, 4_000)))
    assert store.key_expiry("b") == 9_000
    store.apply(Event(5, PUT, "b", b"3"))  # off the lease
    assert store.leases.get(1).keys == {"a"}  # type: ignore[union-attr]
    store.apply(Event(6, REVOKE, "", lifetime=Lifetime(0, 1)))
    assert store.lease(1) is None
    assert store.key_expiry("a") == 0
    with pytest.raises(NoSuchKeyError):
        store.lookup("a")
    assert store.due(clock.now).keys == [("a", 2)]


def test_due_hands_out_each_expired_key_once_and_drops_stale_items() -> None:
    """due() returns keys past their deadline with their mod_revision, once; a rewritten key's old deadline is stale."""
    clock = Clock()
    store = store_at(clock)
    store.apply(Event(1, PUT, "a", b"", lifetime=Lifetime(2_000)))
    store.apply(Event(2, PUT, "b", b"", lifetime=Lifetime(2_000)))
    store.apply(Event(3, PUT, "b", b"", lifetime=Lifetime(8_000)))  # moved on
    store.apply(Event(4, GRANT, "", lifetime=Lifetime(3_000, 4, 2_000)))
    store.apply(Event(5, PUT, "c", b"", lifetime=Lifetime(0, 4)))
    assert not store.due(1_999)
    assert store.leases.next_due() == 2_000
    due = store.due(3_000)
    assert (due.keys, due.leases) == ([("a", 1), ("c", 5)], [4])
    assert not store.due(3_000)
    store.retry_later(["a", "c", "gone"], [4], when=3_250)
    assert not store.due(3_249)
    again = store.due(3_250)
    assert (sorted(again.keys), again.leases) == ([("a", 1), ("c", 5)], [4])
    store.apply(Event(6, DELETE, "a"))
    store.retry_later(["a"], [], when=3_500)
    assert not store.due(3_500)
    assert store.due(8_000).keys == [("b", 3)]


def test_due_hands_out_at_most_limit_deadlines_a_round_and_every_lease_once_in_all() -> None:
    """20,000 leases ending at once come out a bounded slice per round, each once, each with its key."""
    store = Store()
    count = 20_000
    store.apply_batch(
        event
        for n in range(count)
        for event in (
            Event(2 * n + 1, GRANT, "", lifetime=Lifetime(5_000, 2 * n + 1, 1_000)),
            Event(2 * n + 2, PUT, f"k{n}", b"v", lifetime=Lifetime(0, 2 * n + 1)),
        )
    )
    store.leases.watch_lease(39_999, 5_000, when=5_000)  # a deadline that comes up twice (a retry): once only
    rounds = []
    sequence = 2 * count
    while due := store.due(6_000, limit=1_000):
        rounds.append(due)
        for key, _ in due.keys:  # what the expirer writes before it looks again
            sequence += 1
            store.apply(Event(sequence, DELETE, key))
        for id in due.leases:
            sequence += 1
            store.apply(Event(sequence, REVOKE, "", lifetime=Lifetime(0, id)))
    assert len(rounds) == 20 and all(len(due.leases) <= 1_000 for due in rounds)
    leases = [id for due in rounds for id in due.leases]
    assert sorted(leases) == list(range(1, 2 * count, 2))
    keys = [key for due in rounds for key in due.keys]
    assert sorted(keys) == sorted((f"k{n}", 2 * n + 2) for n in range(count))


def test_listing_hides_expired_keys_and_carries_expires_at() -> None:
    """Store.page leaves expired keys out and gives live ones with a deadline their expires_at."""
    clock = Clock()
    store = store_at(clock)
    store.apply(Event(1, PUT, "a", b"1", lifetime=Lifetime(2_000)))
    store.apply(Event(2, PUT, "b", b"2"))
    store.apply(Event(3, GRANT, "", lifetime=Lifetime(5_000, 3, 4_000)))
    store.apply(Event(4, PUT, "c", b"3", lifetime=Lifetime(0, 3)))
    assert store.page("", limit=10).items == [
        Item("a", b"1", 1, 1, 1, 2_000),
        Item("b", b"2", 2, 2, 1),
        Item("c", b"3", 4, 4, 1, 5_000),
    ]
    clock.now = 2_000
    assert [item.key for item in store.page("", limit=10).items] == ["b", "c"]
    assert store.page("", limit=1).last_key == "b"


def test_lease_records_keep_revisions_consecutive_in_the_history() -> None:
    """A lease event takes a revision but changes no key: older revisions are still rebuilt right across it."""
    store = Store()
    store.apply(Event(1, PUT, "a", b"1"))
    store.apply(Event(2, GRANT, "", lifetime=Lifetime(9_000, 2, 9_000)))
    store.apply(Event(3, PUT, "a", b"2"))
    store.apply(Event(4, REVOKE, "", lifetime=Lifetime(0, 2)))
    assert store.history.oldest_revision == 0
    assert store.page("", limit=10, revision=1).items == [Item("a", b"1", 1, 1, 1)]
    assert store.page("", limit=10, revision=2).items == [Item("a", b"1", 1, 1, 1)]
    assert store.page("", limit=10, revision=4).items == [Item("a", b"2", 1, 3, 2)]
    assert store.history.state_at(1) == {"a": Entry(b"1", 1, 1, 1)}


events_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abc"), st.integers(0, 2)),
        st.tuples(st.just("ttl"), st.sampled_from("abc"), st.integers(1, 5_000)),
        st.tuples(st.just("leased"), st.sampled_from("abc"), st.integers(1, 3)),
        st.tuples(st.just("delete"), st.sampled_from("abc"), st.just(0)),
        st.tuples(st.just("grant"), st.just(""), st.integers(1, 5_000)),
        st.tuples(st.just("keepalive"), st.just(""), st.integers(1, 3)),
        st.tuples(st.just("revoke"), st.just(""), st.integers(1, 3)),
    ),
    max_size=30,
)


def build(ops: list[tuple[str, str, int]]) -> list[Event]:
    events: list[Event] = []
    for seq, (op, key, n) in enumerate(ops, start=1):
        if op == "put":
            events.append(Event(seq, PUT, key, b"%d" % n))
        elif op == "ttl":
            events.append(Event(seq, PUT, key, b"t", lifetime=Lifetime(seq * 100 + n)))
        elif op == "leased":
            events.append(Event(seq, PUT, key, b"l", lifetime=Lifetime(0, n)))
        elif op == "delete":
            events.append(Event(seq, DELETE, key))
        elif op == "grant":
            events.append(Event(seq, GRANT, "", lifetime=Lifetime(seq * 100 + n, seq, n)))
        elif op == "keepalive":
            events.append(Event(seq, KEEPALIVE, "", lifetime=Lifetime(seq * 100, n, 100)))
        else:
            events.append(Event(seq, REVOKE, "", lifetime=Lifetime(0, n)))
    return events


@settings(max_examples=300, deadline=None)
@given(ops=events_strategy)
def test_replay_equals_applying_one_by_one_and_the_file_round_trip(ops: list[tuple[str, str, int]]) -> None:
    """apply_batch (replay) and apply (live) reach the same state; encoded and decoded events are identical."""
    events = build(ops)
    live, replayed = Store(), Store()
    for event in events:
        live.apply(event)
    replayed.apply_batch(events)
    assert replayed.entries() == live.entries()
    assert replayed.expiry_state()[:2] == live.expiry_state()[:2]
    assert sorted(replayed.expiry_state()[2]) == sorted(live.expiry_state()[2])
    data = b"".join(encode_event(event) for event in events)
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(data) == events
    assert decoder.failure is None


def test_a_put_without_a_deadline_is_encoded_exactly_as_before() -> None:
    """encode_event of a plain PUT or DELETE is encode_record's bytes: old readers and files are unchanged."""
    assert encode_event(Event(7, PUT, "k", b"v")) == encode_record(7, PUT, "k", b"v")
    assert encode_event(Event(8, DELETE, "k")) == encode_record(8, DELETE, "k")
    assert (
        len(encode_event(Event(7, PUT, "k", b"v", lifetime=Lifetime(5)))) == len(encode_record(7, PUT, "k", b"v")) + 16
    )


def test_a_compacted_section_keeps_deadlines_leases_and_their_order() -> None:
    """Expiring entries and lease entries round-trip through a version 2 section, in sequence order."""
    section = (
        encode_header(first_sequence=10, version=FORMAT_VERSION)
        + encode_entry("plain", b"p", 1, 2, 2)
        + encode_lease_entry(3, 4_000, 9_000)
        + encode_entry("leased", b"l", 4, 4, 1, 0, 3)
        + encode_entry("own", b"o", 5, 6, 2, 7_000)
    )
    decoder = RecordDecoder(first_sequence=10, start_offset=24, compacted=True)
    events = decoder.feed(section[24:])
    assert events == [
        Event(2, PUT, "plain", b"p", 1, 2),
        Event(3, GRANT, "", b"", 0, 0, Lifetime(9_000, 3, 4_000)),
        Event(4, PUT, "leased", b"l", 4, 1, Lifetime(0, 3)),
        Event(6, PUT, "own", b"o", 5, 2, Lifetime(7_000)),
    ]
    assert (decoder.failure, decoder.entries) == (None, 4)
    store = Store()
    store.apply_batch(events)
    assert store.expiry_state() == ({"own": 7_000}, {"leased": 3}, [(3, 4_000, 9_000, "")])


def test_a_grant_records_its_owner_and_an_ownerless_one_is_written_as_before() -> None:
    """An owned grant (and lease entry) round-trips with its owner; one without is the old record, byte for byte."""
    import struct
    import zlib

    owned = Event(5, GRANT, "", "dns:svc-\u00e9".encode(), 0, 0, Lifetime(9_000, 5, 4_000))
    decoder = RecordDecoder(first_sequence=5, start_offset=0)
    assert decoder.feed(encode_event(owned)) == [owned]
    payload = struct.pack("<QBI", 6, 4, 0) + struct.pack("<QQQ", 6, 4_000, 9_000)  # a grant as older builds wrote it
    older = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    assert encode_event(Event(6, GRANT, "", b"", 0, 0, Lifetime(9_000, 6, 4_000))) == older
    assert decoder.feed(older) == [Event(6, GRANT, "", b"", 0, 0, Lifetime(9_000, 6, 4_000))]
    section = (
        encode_header(first_sequence=10, version=FORMAT_VERSION)
        + encode_lease_entry(3, 4_000, 9_000, "tok")
        + encode_lease_entry(4, 1_000, 8_000)
    )
    compacted = RecordDecoder(first_sequence=10, start_offset=24, compacted=True)
    entries = compacted.feed(section[24:])
    assert entries == [
        Event(3, GRANT, "", b"tok", 0, 0, Lifetime(9_000, 3, 4_000)),
        Event(4, GRANT, "", b"", 0, 0, Lifetime(8_000, 4, 1_000)),
    ]
    store = Store()
    store.apply_batch([*entries, owned, Event(6, GRANT, "", b"", 0, 0, Lifetime(9_000, 6, 4_000))])
    assert sorted(store.expiry_state()[2]) == [
        (3, 4_000, 9_000, "tok"),
        (4, 1_000, 8_000, ""),
        (5, 4_000, 9_000, "dns:svc-\u00e9"),
        (6, 4_000, 9_000, ""),
    ]
    assert (store.leases.owned_by("tok"), store.leases.owned_by("")) == (1, 0)
    store.apply(Event(7, REVOKE, "", b"", 0, 0, Lifetime(0, 3)))
    assert store.leases.owned_by("tok") == 0


def test_an_owned_grant_without_its_owner_is_a_failure() -> None:
    """An owned-grant record whose owner is empty, or whose length disagrees, is corruption, never an event."""
    import struct
    import zlib

    for owner_length, owner in ((0, b""), (3, b"ab")):
        payload = struct.pack("<QBI", 1, 13, owner_length) + struct.pack("<QQQ", 1, 4_000, 9_000) + owner
        record = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
        decoder = RecordDecoder(start_offset=0)
        assert decoder.feed(record) == []
        assert decoder.failure is not None
        assert decoder.failure.reason == f"malformed record (type 13, key length {owner_length})"


def test_a_malformed_lease_record_is_a_failure() -> None:
    """A checksummed lease record of the wrong length (or with a key) is corruption, never an event."""
    import struct
    import zlib

    payload = struct.pack("<QBI", 1, 4, 0) + b"\x00" * 16  # 8 bytes short
    record = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(record) == []
    assert decoder.failure is not None and decoder.failure.reason == "malformed record (type 4, key length 0)"


def test_the_judge_decides_expiry_and_leases_in_log_order() -> None:
    """In one batch: a grant's id is its sequence, a PUT may use it, a keepalive of a missing lease and an
    expired-only DELETE before the deadline are refused, after a revoke the lease is gone."""
    store = Store()
    store.apply(Event(1, PUT, "old", b"", lifetime=Lifetime(5_000)))
    batch = [
        Mutation(GRANT, "", b"", None, Expiry(ttl=1_000)),
        Mutation(PUT, "k", b"v", None, Expiry(lease=2)),
        Mutation(KEEPALIVE, "", b"", None, Expiry(lease=99)),
        Mutation(DELETE, "old", b"", Precondition(1), Expiry(expired=True)),
        Mutation(PUT, "t", b"v", None, Expiry(ttl=500)),
        Mutation(REVOKE, "", b"", None, Expiry(lease=2)),
        Mutation(PUT, "k2", b"v", None, Expiry(lease=2)),
    ]
    outcomes = sequence_batch(batch, 2, store.mod_revision, store, lambda: 4_000)
    assert outcomes[0] == Event(2, GRANT, "", b"", 0, 0, Lifetime(5_000, 2, 1_000))
    assert outcomes[1] == Event(3, PUT, "k", b"v", 0, 0, Lifetime(0, 2))
    assert isinstance(outcomes[2], LeaseNotFoundError) and outcomes[2].lease == 99
    assert isinstance(outcomes[3], PreconditionFailedError) and outcomes[3].current == 1
    assert outcomes[4] == Event(4, PUT, "t", b"v", 0, 0, Lifetime(4_500))
    assert outcomes[5] == Event(5, REVOKE, "", b"", 0, 0, Lifetime(0, 2))
    assert isinstance(outcomes[6], LeaseNotFoundError)
    later = sequence_batch(
        [
            Mutation(DELETE, "old", b"", Precondition(1), Expiry(expired=True)),
            Mutation(DELETE, "old", b"", Precondition(1), Expiry(expired=True)),
        ],
        6,
        store.mod_revision,
        store,
        lambda: 5_000,
    )
    assert later[0] == Event(6, DELETE, "old")
    assert isinstance(later[1], PreconditionFailedError) and later[1].current == 0


def test_a_retried_lease_kept_alive_meanwhile_is_not_handed_out() -> None:
    """A retry of a lease whose deadline moved into the future is dropped: only its new deadline brings it back."""
    store = Store()
    store.apply(Event(1, GRANT, "", lifetime=Lifetime(1_000, 1, 1_000)))
    store.apply(Event(2, PUT, "k", b"", lifetime=Lifetime(0, 1)))
    assert store.due(1_000).leases == [1]
    store.apply(Event(3, KEEPALIVE, "", lifetime=Lifetime(2_100, 1, 1_000)))
    store.retry_later(["k"], [1], when=1_250)
    assert not store.due(1_250)
    due = store.due(2_100)
    assert (due.keys, due.leases) == ([("k", 2)], [1])
    assert not store.due(2_100)  # handed out once


def test_the_expirers_heap_stays_bounded_when_keys_are_rewritten_and_kept_alive() -> None:
    """A key rewritten with a long ttl and a lease kept alive 50,000 times: the heap is rebuilt, expiry still exact."""
    store = Store()
    store.apply(Event(1, GRANT, "", lifetime=Lifetime(10**9, 1, 10**9)))
    store.apply(Event(2, PUT, "leased", b"", lifetime=Lifetime(0, 1)))
    sequence = 3
    for n in range(25_000):
        store.apply(Event(sequence, PUT, "k", b"", lifetime=Lifetime(10**9 + n)))
        store.apply(Event(sequence + 1, KEEPALIVE, "", lifetime=Lifetime(10**9 + n, 1, 10**9)))
        sequence += 2
    assert store.leases.pending() <= 2 * 3 + 4096 + 1  # live: two keys and a lease
    due = store.due(10**9 + 25_000)
    assert (sorted(due.keys), due.leases) == ([("k", sequence - 2), ("leased", 2)], [1])
