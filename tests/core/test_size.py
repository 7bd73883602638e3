"""The store's size: what TUCO_MAX_STORE_BYTES bounds, kept exact by every way an event can be applied."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tuco.core.events import Event, EventType, Lifetime
from tuco.core.store import ENTRY_BYTES, Store, key_bytes


def recounted(store: Store) -> int:
    """The size counted from scratch: each key's UTF-8, its value, and ENTRY_BYTES."""
    return sum(len(key.encode()) + len(value) + ENTRY_BYTES for key, value in store.snapshot().items())


def test_a_key_costs_its_utf8_its_value_and_the_entry_overhead() -> None:
    """One ASCII key, one non-ASCII key; rewrites change only the value's part; deletes give it all back."""
    store = Store()
    store.apply(Event(1, EventType.PUT, "ab", b"123"))
    assert store.bytes == 2 + 3 + ENTRY_BYTES
    store.apply(Event(2, EventType.PUT, "ключ", b""))
    assert store.bytes == 2 + 3 + 8 + 2 * ENTRY_BYTES
    assert store.growth("ab", b"12345") == 2 and store.growth("ab", b"") == -3
    assert store.growth("new", b"xy") == 3 + 2 + ENTRY_BYTES
    store.apply(Event(3, EventType.PUT, "ab", b"12345"))
    assert store.bytes == 2 + 5 + 8 + 2 * ENTRY_BYTES
    store.apply(Event(4, EventType.DELETE, "ab"))
    store.apply(Event(5, EventType.DELETE, "absent"))
    assert store.bytes == 8 + ENTRY_BYTES
    assert key_bytes("ключ") == 8 and key_bytes("ab") == 2


def test_keys_with_a_deadline_or_a_lease_count_the_same() -> None:
    """A key moved in and out of the expiring keys (ttl, lease, plain again, revoked lease) is counted once."""
    store = Store()
    store.apply(Event(1, EventType.LEASE_GRANT, "", b"", 0, 0, Lifetime(10_000, 1, 10_000)))
    store.apply(Event(2, EventType.PUT, "t", b"abc", 0, 0, Lifetime(5_000, 0, 0)))
    store.apply(Event(3, EventType.PUT, "l", b"abcd", 0, 0, Lifetime(0, 1, 0)))
    assert store.bytes == recounted(store) == 1 + 3 + 1 + 4 + 2 * ENTRY_BYTES
    store.apply(Event(4, EventType.PUT, "t", b"a"))  # plain again
    store.apply(Event(5, EventType.PUT, "l", b"ab", 0, 0, Lifetime(9_000, 0, 0)))  # from the lease to a ttl
    assert store.bytes == recounted(store) == 1 + 1 + 1 + 2 + 2 * ENTRY_BYTES
    store.apply(Event(6, EventType.LEASE_REVOKE, "", b"", 0, 0, Lifetime(0, 1, 0)))
    store.apply(Event(7, EventType.DELETE, "l"))
    assert store.bytes == recounted(store) == 1 + 1 + ENTRY_BYTES


_KEYS = st.sampled_from(["a", "b", "ключ", "🔑", "c" * 40])
_VALUES = st.binary(max_size=20)


@st.composite
def _events(draw: st.DrawFn) -> list[Event]:
    """A history of PUTs (plain, with a deadline, on a lease), DELETEs and lease grants and revokes."""
    events: list[Event] = []
    leases: list[int] = []
    for sequence in range(1, draw(st.integers(1, 40)) + 1):
        kind = draw(st.sampled_from(["put", "put", "ttl", "lease", "delete", "grant", "revoke"]))
        key, value = draw(_KEYS), draw(_VALUES)
        if kind == "put":
            events.append(Event(sequence, EventType.PUT, key, value))
        elif kind == "ttl":
            events.append(Event(sequence, EventType.PUT, key, value, 0, 0, Lifetime(draw(st.integers(1, 99)), 0, 0)))
        elif kind == "lease" and leases:
            events.append(Event(sequence, EventType.PUT, key, value, 0, 0, Lifetime(0, draw(st.sampled_from(leases)))))
        elif kind == "grant":
            leases.append(sequence)
            events.append(Event(sequence, EventType.LEASE_GRANT, "", b"", 0, 0, Lifetime(50, sequence, 50)))
        elif kind == "revoke" and leases:
            lease = leases.pop(draw(st.integers(0, len(leases) - 1)))
            events.append(Event(sequence, EventType.LEASE_REVOKE, "", b"", 0, 0, Lifetime(0, lease, 0)))
        else:
            events.append(Event(sequence, EventType.DELETE, key))
    return events


@settings(max_examples=400, deadline=None)
@given(_events(), st.integers(0, 40))
def test_the_size_is_exact_applied_one_by_one_or_replayed(events: list[Event], split: int) -> None:
    """After any history, applied event by event, replayed in one batch, or replayed then followed, the size is
    the recount of what the store holds."""
    one_by_one = Store()
    for event in events:
        one_by_one.apply(event)
    replayed = Store()
    replayed.apply_batch(events)
    mixed = Store()
    mixed.apply_batch(events[:split])
    for event in events[split:]:
        mixed.apply(event)
    for store in (one_by_one, replayed, mixed):
        assert store.bytes == recounted(store)
        assert store.snapshot() == one_by_one.snapshot()
        assert store.entry_bytes(25) == sum(
            len(key.encode()) + len(value) + 25 for key, value in store.snapshot().items()
        )


def test_replay_counts_the_size_once_after_its_last_batch() -> None:
    """Start-up replay applies a log's batches without recounting each (an O(keys) pass a batch); the size it
    leaves is still exact, and a batch applied the plain way recounts by itself."""
    import asyncio

    from tuco.replay import replay
    from tuco.testing import MemoryLog

    async def main() -> Store:
        log = MemoryLog()
        await log.open()
        await log.run(Store())
        for i in range(50):
            await log.write_put(f"k{i % 20}", b"v" * i)
        await log.write_delete("k3")
        store = Store()
        await replay(log, store)
        await log.aclose()
        return store

    store = asyncio.run(main())
    assert store.bytes == recounted(store) > 0
    again = Store()
    again.apply_batch([Event(1, EventType.PUT, "a", b"xyz")])
    assert again.bytes == 1 + 3 + ENTRY_BYTES


def test_a_run_of_plain_writes_keeps_the_size_exact_without_a_recount() -> None:
    """Replay's common batch counts as it goes: no O(keys) pass at the end, and the size is still exact."""
    from tuco.core.codec import RecordDecoder, encode_event

    events = [
        Event(1, EventType.PUT, "a", b"123"),
        Event(2, EventType.PUT, "ключ", b"x" * 40),
        Event(3, EventType.PUT, "a", b"1"),
        Event(4, EventType.DELETE, "ключ"),
        Event(5, EventType.DELETE, "absent"),
        Event(6, EventType.PUT, "é", b""),
    ]
    [run] = RecordDecoder(start_offset=0).feed_batches(b"".join(map(encode_event, events)))
    store = Store()
    store.apply_batch(run, recount=False)
    assert store.bytes == recounted(store) == 1 + 1 + 2 + 0 + 2 * ENTRY_BYTES
    store._data["a"] = (b"", 1, 1, 1)  # behind the store's back: a recount now would notice, none happens
    store.recount_bytes()
    assert store.bytes == 1 + 1 + 2 + 2 * ENTRY_BYTES
