"""Snapshots of a changing store: whatever writes interleave with the walk, the records are exactly the state at R."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tuco.core.events import Event, EventType, Lifetime
from tuco.core.snapshot import KeyRecord, SnapshotDecoder
from tuco.core.snapshots import Snapshots, encode_state
from tuco.core.store import Store
from tuco.core.txn import encode_writes
from tuco.errors import SnapshotError

KEYS = [f"k{i:02d}" for i in range(24)]
# An operation: (key index, None for a DELETE or the value to PUT, whether the PUT has a deadline).
OPS = st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.none() | st.binary(max_size=8), st.booleans()), max_size=60)


def apply(store: Store, snapshots: Snapshots, op: tuple[int, bytes | None, bool]) -> None:
    index, value, expiring = op
    sequence = store.last_sequence + 1
    if value is None:
        event = Event(sequence, EventType.DELETE, KEYS[index])
    else:
        lifetime = Lifetime(deadline=2_000_000_000_000 + sequence) if expiring else None
        event = Event(sequence, EventType.PUT, KEYS[index], value, lifetime=lifetime)
    snapshots.before(store, event)
    store.apply(event)


def state_records(store: Store) -> set[KeyRecord]:
    """What a snapshot of ``store`` must hold: every key with its revisions, deadline and lease."""
    records = set()
    for key in store.keys_after(None, 1000):
        found = store.key_state(key)
        assert found is not None
        (value, create_revision, mod_revision, version), deadline, lease = found
        records.add(KeyRecord(key, value, create_revision, mod_revision, version, deadline, lease))
    return records


@settings(max_examples=300, deadline=None)
@given(before=OPS, during=st.lists(OPS, max_size=12), chunk=st.integers(1, 5))
def test_a_snapshot_is_the_state_at_its_revision_whatever_changes_during_it(
    before: list[tuple[int, bytes | None, bool]], during: list[list[tuple[int, bytes | None, bool]]], chunk: int
) -> None:
    """Writes and deletes between every chunk of the walk never leak into the snapshot, nor hide a key from it."""
    store = Store()
    snapshots = Snapshots()
    for op in before:
        apply(store, snapshots, op)
    expected = state_records(store)
    revision = store.last_sequence
    state = snapshots.begin(store, 0)
    decoder = SnapshotDecoder()
    records: list[object] = []
    rounds = iter(during)
    for data in encode_state(state, store, 0, chunk):
        if data is None:
            for op in next(rounds, []):
                apply(store, snapshots, op)
        else:
            records += decoder.feed(data)
    summary = decoder.finish()
    snapshots.end(state)
    assert summary.revision == revision
    assert len(records) == len(expected)
    assert set(records) == expected
    assert not snapshots


def test_over_its_bound_a_snapshot_is_abandoned_and_its_stream_ends_untrailed() -> None:
    """Past max_bytes of before images the walk raises SnapshotError; nothing a reader accepts was produced."""
    store = Store()
    for sequence in range(1, 11):
        store.apply(Event(sequence, EventType.PUT, f"k{sequence}", b"v" * 100))
    snapshots = Snapshots(max_bytes=1000)
    state = snapshots.begin(store, 0)
    chunks = encode_state(state, store, 0, 2)
    assert next(chunks) is not None  # the header
    for sequence in range(11, 21):  # rewrite every key before the walk starts
        event = Event(sequence, EventType.PUT, f"k{sequence - 10}", b"w")
        snapshots.before(store, event)
        store.apply(event)
    try:
        list(chunks)
    except SnapshotError as exc:
        assert "more than 1000 bytes of keys changed while it ran" in str(exc)
    else:
        raise AssertionError("the snapshot was not abandoned")


def test_an_unknown_event_kind_abandons_a_running_snapshot() -> None:
    """A change this module cannot follow (a newer event kind) abandons the snapshot rather than risk it."""
    store = Store()
    snapshots = Snapshots()
    state = snapshots.begin(store, 0)
    snapshots.before(store, Event(1, EventType.LEASE_GRANT, "", lifetime=Lifetime(0, 1, 1000)))
    assert state.failed is None
    snapshots.before(store, Event(2, 99, "x"))  # type: ignore[arg-type]
    assert state.failed is not None and "cannot follow" in state.failed


def test_running_snapshots_are_capped() -> None:
    """A third snapshot at once is refused; ending one makes room."""
    store = Store()
    snapshots = Snapshots(max_running=2)
    first = snapshots.begin(store, 0)
    snapshots.begin(store, 0)
    try:
        snapshots.begin(store, 0)
    except SnapshotError as exc:
        assert str(exc) == "2 snapshots are being taken already; try again when one ends"
    else:
        raise AssertionError("a third snapshot was begun")
    snapshots.end(first)
    snapshots.begin(store, 0)
    assert len(snapshots) == 2


def test_a_registered_event_kind_keeps_before_images_of_the_keys_it_names() -> None:
    """A kind in KEYS_OF (a transaction's, say) keeps each named key's state at R, so the snapshot stays exact."""
    from tuco.core.snapshots import KEYS_OF

    store = Store()
    store.apply(Event(1, EventType.PUT, "a", b"1"))
    store.apply(Event(2, EventType.PUT, "b", b"2"))
    snapshots = Snapshots()
    state = snapshots.begin(store, 0)
    KEYS_OF[99] = lambda event: ("a", "b")
    try:
        snapshots.before(store, Event(3, 99, ""))  # type: ignore[arg-type]
    finally:
        del KEYS_OF[99]
    store.apply(Event(3, EventType.PUT, "a", b"changed"))
    store.apply(Event(4, EventType.DELETE, "b"))
    assert state.failed is None
    assert state.chunk(store, 10) == [KeyRecord("a", b"1", 1, 1, 1)]
    assert state.chunk(store, 10) is None
    assert list(state.deleted()) == [KeyRecord("b", b"2", 2, 2, 1)]


def test_a_transaction_during_a_snapshot_keeps_each_key_it_writes_as_it_was() -> None:
    """A TXN event (a put, a delete and a new key at one revision) leaves the snapshot exactly the state at R."""
    store = Store()
    store.apply(Event(1, EventType.PUT, "a", b"1"))
    store.apply(Event(2, EventType.PUT, "b", b"2"))
    snapshots = Snapshots()
    state = snapshots.begin(store, 0)
    value = encode_writes([(EventType.PUT, "a", b"changed", 0, 0), (EventType.DELETE, "b", b"", 0, 0)])
    value += encode_writes([(EventType.PUT, "c", b"new", 0, 0)])
    txn = Event(3, EventType.TXN, "", value)
    snapshots.before(store, txn)
    store.apply(txn)
    assert (store.key_state("a") or ((b"",),))[0][0] == b"changed"  # the transaction was applied
    assert state.failed is None
    assert state.chunk(store, 10) == [KeyRecord("a", b"1", 1, 1, 1)]
    assert state.chunk(store, 10) is None
    assert list(state.deleted()) == [KeyRecord("b", b"2", 2, 2, 1)]
