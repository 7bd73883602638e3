"""Transactions in the core: deciding, the TXN event's writes, and a store that applies, replays and rewinds them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tuco.core.codec import RecordDecoder, encode_entry, encode_event, encode_header
from tuco.core.events import Entry, Event, EventType, Lifetime
from tuco.core.history import flatten
from tuco.core.store import Store
from tuco.core.txn import Compare, Txn, TxnOp, decide, decide_batch, decode_writes, encode_writes
from tuco.core.watch import Selector, WatchEvent, events_from_changes, events_from_log
from tuco.errors import LeaseNotFoundError, LogFormatError

KEYS = ["a", "b", "p/1", "p/2", "q"]


def test_writes_round_trip_and_damage_is_a_format_error() -> None:
    """Encoded writes decode to the same PUTs (with deadline or lease) and DELETEs; cut bytes are LogFormatError."""
    writes = [(EventType.PUT, "a", b"1", 0, 0), (EventType.PUT, "é", b"", 5, 0), (EventType.DELETE, "b", b"", 0, 0)]
    data = encode_writes(writes)
    assert decode_writes(7, data) == [
        Event(7, EventType.PUT, "a", b"1"),
        Event(7, EventType.PUT, "é", b"", 0, 0, Lifetime(5, 0)),
        Event(7, EventType.DELETE, "b"),
    ]
    for cut in (1, 10, len(data) - 1):
        try:
            decode_writes(7, data[:cut])
        except LogFormatError:
            continue
        raise AssertionError(f"a write cut at {cut} decoded")


def test_a_transaction_record_decodes_from_a_file_and_a_bad_one_stops_decoding() -> None:
    """The TXN record round-trips through the file codec; a checksummed record with damaged writes is a failure."""
    event = Event(1, EventType.TXN, "", encode_writes([(EventType.PUT, "k", b"v", 0, 0)]))
    decoder = RecordDecoder()
    assert decoder.feed(encode_event(event)) == [event]
    bad = Event(1, EventType.TXN, "", b"\x00\x01garbage")
    broken = RecordDecoder()
    assert broken.feed(encode_event(bad)) == []
    assert broken.failure is not None and broken.failure.search_from is None


def test_shared_revision_entries_are_their_own_kind() -> None:
    """A compacted section may repeat a revision only with the shared kinds; a plain entry repeating one is damage."""
    first = encode_entry("a", b"1", 3, 3, 1)
    shared = encode_entry("b", b"2", 3, 3, 1, shared=True)
    plain = encode_entry("b", b"2", 3, 3, 1)
    ok = RecordDecoder(first_sequence=10, start_offset=0, compacted=True)
    assert [e.key for e in ok.feed(first + shared)] == ["a", "b"] and ok.failure is None
    bad = RecordDecoder(first_sequence=10, start_offset=0, compacted=True)
    assert [e.key for e in bad.feed(first + plain)] == ["a"]
    assert bad.failure is not None
    assert encode_header(first_sequence=1)  # the header itself is unchanged


def test_decide_runs_the_branch_in_order_and_refuses_a_missing_lease() -> None:
    """Compares pick the branch; a get after a put reads it; a put on a missing lease refuses everything."""
    store = Store()
    store.apply(Event(1, EventType.PUT, "a", b"1"))
    txn = Txn(
        (Compare("a", "value", "==", b"1"),),
        (TxnOp("get", "b"), TxnOp("put", "b", b"2"), TxnOp("get", "b")),
        (TxnOp("get", "a"),),
    )
    outcome = decide(txn, store, 2, 0)
    assert not isinstance(outcome, LeaseNotFoundError)
    assert (outcome.succeeded, outcome.revision) == (True, 2)
    assert outcome.results[0].entry is None and outcome.results[2].entry == Entry(b"2", 2, 2, 1)
    refused = decide(Txn((), (TxnOp("put", "c", b"", lease=9),), ()), store, 2, 0)
    assert isinstance(refused, LeaseNotFoundError) and refused.lease == 9


def test_watch_events_of_a_transaction_share_its_revision() -> None:
    """From History and from a log's events alike, a transaction's writes are events at its one revision."""
    store = Store()
    store.apply(Event(1, EventType.PUT, "p/1", b"x"))
    event = Event(
        2, EventType.TXN, "", encode_writes([(EventType.PUT, "p/2", b"y", 0, 0), (EventType.DELETE, "p/1", b"", 0, 0)])
    )
    store.apply(event)
    from_memory = events_from_changes(store.history.changes_after(1, 10), Selector("p/"))
    assert from_memory == [
        WatchEvent(2, "put", "p/2", b"y", 2, 1),
        WatchEvent(2, "delete", "p/1", b"", None, None),
    ]
    assert [(e.revision, e.type, e.key) for e in events_from_log([event], Selector("p/"))] == [
        (2, "put", "p/2"),
        (2, "delete", "p/1"),
    ]
    assert len(store.history) == 2 and len(list(flatten(store.history.changes_after(0, 10)))) == 3


ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=3)),
        st.tuples(st.just("delete"), st.sampled_from(KEYS), st.just(b"")),
        st.tuples(st.just("txn"), st.lists(st.sampled_from(KEYS), unique=True, max_size=4), st.binary(max_size=2)),
        st.tuples(st.just("range"), st.sampled_from(["p/", "q", ""]), st.just(b"")),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_live_replayed_and_rewound_states_agree(steps: list[tuple[str, object, bytes]]) -> None:
    """Applied one by one, replayed in a batch, or rebuilt at any earlier revision: the same state as recorded then."""
    live = Store()
    events: list[Event] = []
    snapshots: dict[int, dict[str, tuple[bytes, int, int, int]]] = {0: {}}
    for kind, target, value in steps:
        sequence = len(events) + 1
        if kind == "put":
            event = Event(sequence, EventType.PUT, str(target), value)
        elif kind == "delete":
            event = Event(sequence, EventType.DELETE, str(target))
        else:
            branch = (
                tuple(TxnOp("put", key, value) for key in target)  # type: ignore[attr-defined]
                if kind == "txn"
                else (TxnOp("delete_prefix", str(target)),)
            )
            decided = decide(Txn((), branch, ()), live, sequence, 0)
            assert not isinstance(decided, LeaseNotFoundError)
            if decided.event is None:
                continue
            event = decided.event
        events.append(event)
        assert live.apply(event)
        snapshots[sequence] = live.entries()
    replayed = Store()
    replayed.apply_batch(events)
    assert replayed.entries() == live.entries() and replayed.last_sequence == live.last_sequence
    for revision, expected in snapshots.items():
        page = live.page("", limit=100, revision=revision)
        assert {i.key: (i.value, i.create_revision, i.mod_revision, i.version) for i in page.items} == expected


txn_steps = st.lists(
    st.tuples(
        st.lists(
            st.tuples(st.sampled_from(KEYS), st.sampled_from(["version", "exists"]), st.integers(0, 3)), max_size=2
        ),
        st.lists(st.sampled_from(KEYS), unique=True, max_size=3),
        st.sampled_from(["put", "delete", "range", "read"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.binary(max_size=2)), max_size=6), txn_steps)
def test_a_batch_of_transactions_decides_as_one_at_a_time(initial: list[tuple[str, bytes]], steps: list) -> None:  # type: ignore[type-arg]
    """Deciding many transactions in one batch (over an overlay) gives what deciding and applying each in turn gives."""
    txns = []
    for compares, keys, kind in steps:
        checks = tuple(Compare(k, t, "==", bool(v % 2) if t == "exists" else v) for k, t, v in compares)
        if kind == "put":
            ops: tuple[TxnOp, ...] = tuple(TxnOp("put", k, b"x") for k in keys)
        elif kind == "delete":
            ops = tuple(TxnOp("delete", k) for k in keys)
        elif kind == "range":
            ops = (TxnOp("delete_prefix", "p/"),)
        else:
            ops = (TxnOp("list", "", limit=3), *(TxnOp("get", k) for k in keys))
        txns.append(Txn(checks, ops, (TxnOp("get", "a"),)))
    one, batch = Store(), Store()
    for n, (key, value) in enumerate(initial, 1):
        one.apply(Event(n, EventType.PUT, key, value))
        batch.apply(Event(n, EventType.PUT, key, value))
    first = len(initial) + 1
    expected = []
    sequence = first
    for txn in txns:
        outcome = decide(txn, one, sequence, 0)
        assert not isinstance(outcome, LeaseNotFoundError)
        expected.append(outcome)
        if outcome.event is not None:
            one.apply(outcome.event)
            sequence += 1
    decided = decide_batch(txns, batch, first, 0)
    assert decided == expected
    for outcome in decided:
        if not isinstance(outcome, LeaseNotFoundError) and outcome.event is not None:
            batch.apply(outcome.event)
    assert batch.entries() == one.entries()
