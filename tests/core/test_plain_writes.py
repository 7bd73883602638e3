"""Replay's fast path: runs of plain PUTs and DELETEs decoded into :class:`PlainWrites` and applied without events.

Whatever the chunking, the batches hold exactly the events the records do, and applying them reaches the
state that applying each event live (:meth:`Store.apply`) reaches.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuco.core.codec import RecordDecoder, encode_event, encode_record
from tuco.core.events import Event, EventType, Lifetime, PlainWrites
from tuco.core.origin import Reason, new_origin
from tuco.core.store import Store

PUT, DELETE = EventType.PUT, EventType.DELETE
GRANT, KEEPALIVE, REVOKE = EventType.LEASE_GRANT, EventType.LEASE_KEEPALIVE, EventType.LEASE_REVOKE

ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["a", "b", "c", "é"]), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.sampled_from(["a", "b", "c", "é"]), st.integers(0, 3)),
        st.tuples(st.just("ttl"), st.sampled_from(["a", "b"]), st.integers(1, 5_000)),
        st.tuples(st.just("leased"), st.sampled_from(["a", "c"]), st.integers(1, 3)),
        st.tuples(st.just("grant"), st.just(""), st.integers(1, 5_000)),
        st.tuples(st.just("revoke"), st.just(""), st.integers(1, 3)),
    ),
    max_size=40,
)
ORIGINS = [None, new_origin("alice", 1_700_000_000_000), new_origin("böb", 5), new_origin("alice", 9, Reason.DELETED)]


def build(ops: list[tuple[str, str, int]]) -> list[Event]:
    """Events as a server logs them: plain writes bare or attributed (``n`` picks the origin), the rest apart."""
    events: list[Event] = []
    for seq, (op, key, n) in enumerate(ops, start=1):
        if op == "put":
            events.append(Event(seq, PUT, key, b"v" * (seq % 7), origin=ORIGINS[n]))  # lengths differ: sizes
        elif op == "delete":
            events.append(Event(seq, DELETE, key, origin=ORIGINS[n]))
        elif op == "ttl":
            events.append(Event(seq, PUT, key, b"t", lifetime=Lifetime(seq * 100 + n)))
        elif op == "leased":
            events.append(Event(seq, PUT, key, b"l", lifetime=Lifetime(0, n)))
        elif op == "grant":
            events.append(Event(seq, GRANT, "", lifetime=Lifetime(seq * 100 + n, seq, n)))
        else:
            events.append(Event(seq, REVOKE, "", lifetime=Lifetime(0, n)))
    return events


def decode_in_chunks(data: bytes, sizes: list[int]) -> tuple[list[object], RecordDecoder]:
    decoder = RecordDecoder(start_offset=0)
    batches: list[object] = []
    pos = 0
    for size in [*sizes, len(data)]:
        batches.extend(decoder.feed_batches(data[pos : pos + size]))
        pos += size
    return batches, decoder


@settings(max_examples=300, deadline=None)
@given(ops=ops_strategy, data=st.data())
def test_batches_hold_the_events_and_replay_reaches_the_live_state(
    ops: list[tuple[str, str, int]], data: st.DataObject
) -> None:
    events = build(ops)
    encoded = b"".join(map(encode_event, events))
    sizes = data.draw(st.lists(st.integers(1, max(1, len(encoded))), max_size=8))
    batches, decoder = decode_in_chunks(encoded, sizes)
    assert decoder.failure is None and decoder.offset == len(encoded)
    assert [event for batch in batches for event in batch] == events  # type: ignore[attr-defined]
    live, replayed = Store(), Store()
    for event in events:
        live.apply(event)
    for batch in batches:
        replayed.apply_batch(batch, recount=False)  # type: ignore[arg-type]
    replayed.recount_bytes()
    assert replayed.entries() == live.entries()
    assert replayed.expiry_state()[:2] == live.expiry_state()[:2]
    assert sorted(replayed.expiry_state()[2]) == sorted(live.expiry_state()[2])
    assert (replayed.last_sequence, replayed.bytes, len(replayed)) == (live.last_sequence, live.bytes, len(live))


def test_a_log_of_plain_writes_decodes_into_runs_and_nothing_else() -> None:
    """Bare and attributed PUTs and DELETEs, in one chunk: a single run, each write with its origin."""
    alice = new_origin("alice", 1_700_000_000_000)
    events = [
        Event(1, PUT, "a", b"1"),
        Event(2, PUT, "b", b"2", origin=alice),
        Event(3, DELETE, "a", origin=new_origin("alice", 1_700_000_000_000, Reason.DELETED)),
        Event(4, PUT, "b", b"3", origin=alice),
    ]
    batches = RecordDecoder(start_offset=0).feed_batches(b"".join(map(encode_event, events)))
    assert [type(batch) for batch in batches] == [PlainWrites]
    run = batches[0]
    assert isinstance(run, PlainWrites)
    assert (run.first_sequence, run.keys, run.values) == (1, ["a", "b", "a", "b"], [b"1", b"2", None, b"3"])
    assert run.origins[1] is run.origins[3]  # a batch's records share one decoded origin
    store = Store()
    store.apply_batch(run)
    assert store.entries() == {"b": (b"3", 2, 4, 2)}
    assert store.last_sequence == 4


def test_other_records_end_a_run_and_keep_their_order() -> None:
    events = [
        Event(1, PUT, "a", b"1"),
        Event(2, GRANT, "", lifetime=Lifetime(9_000, 2, 1_000)),
        Event(3, PUT, "a", b"2", lifetime=Lifetime(0, 2)),
        Event(4, PUT, "a", b"3"),  # takes the key off its lease: applied after the leased PUT, not before
        Event(5, DELETE, "b"),
    ]
    batches = RecordDecoder(start_offset=0).feed_batches(b"".join(map(encode_event, events)))
    assert [type(batch) for batch in batches] == [PlainWrites, list, PlainWrites]
    store = Store()
    for batch in batches:
        store.apply_batch(batch)
    assert store.entries() == {"a": (b"3", 1, 4, 3)}
    assert store.expiry_state()[:2] == ({}, {})


def test_a_delete_carrying_a_value_is_decoded_as_an_event_with_it() -> None:
    """The format lets a DELETE carry bytes (tuco never writes one): they are kept, so the run path leaves it."""
    batches = RecordDecoder(start_offset=0).feed_batches(encode_record(1, DELETE, "k", b"x"))
    assert batches == [[Event(1, DELETE, "k", b"x")]]


def test_a_run_already_applied_in_part_skips_what_was_applied() -> None:
    """A follower handed writes again after a reconnect: those at or below the last applied are skipped."""
    run = PlainWrites(3)
    run.keys[:] = ["a", "b", "a"]
    run.values[:] = [b"x", b"y", b"z"]
    run.origins[:] = [None, None, None]
    store = Store()
    store.apply_batch(
        [Event(1, PUT, "a", b"1"), Event(2, PUT, "a", b"2"), Event(3, PUT, "a", b"x"), Event(4, PUT, "b", b"y")]
    )
    store.apply_batch(run)
    assert store.entries() == {"a": (b"z", 1, 5, 4), "b": (b"y", 4, 4, 1)}
    assert store.last_sequence == 5


def test_plain_writes_read_as_a_sequence_of_events() -> None:
    run = PlainWrites(7)
    origin = new_origin("alice", 5)
    run.keys[:] = ["a", "b", "c"]
    run.values[:] = [b"1", None, b"3"]
    run.origins[:] = [None, origin, None]
    expected = [Event(7, PUT, "a", b"1"), Event(8, DELETE, "b", origin=origin), Event(9, PUT, "c", b"3")]
    assert len(run) == 3
    assert list(run) == expected
    assert (run[0], run[-1], run[1:], run[::2]) == (expected[0], expected[2], expected[1:], expected[::2])
    with pytest.raises(IndexError):
        run[3]
