"""A batch's writes carry their mutations' origins, stamped with one moment by the log's clock (sequence_batch)."""

from __future__ import annotations

import gc

from tuco.core.events import Event, EventType
from tuco.core.origin import Reason, new_origin
from tuco.core.store import Store
from tuco.log._sequencing import Mutation, sequence_batch

PUT, DELETE = EventType.PUT, EventType.DELETE


def _never_read(key: str) -> int:
    raise AssertionError(f"a batch without conditions read {key!r}")


def test_one_origin_for_the_whole_batch_is_stamped_once() -> None:
    """Every write of one principal gets the same stamped origin object, at the clock's moment."""
    by = new_origin("ci-token", 0)
    batch = [Mutation(PUT, "a", b"1", None, None, None, by), Mutation(PUT, "b", b"2", None, None, None, by)]
    events = sequence_batch(batch, 7, _never_read, now=lambda: 1234)
    assert events == [
        Event(7, PUT, "a", b"1", origin=new_origin("ci-token", 1234)),
        Event(8, PUT, "b", b"2", origin=new_origin("ci-token", 1234)),
    ]
    assert isinstance(events[0], Event) and isinstance(events[1], Event)
    assert events[0].origin is events[1].origin


def test_mixed_origins_each_keep_their_own() -> None:
    """Writes of several principals, or none, in one batch: each event names its own, all at one moment."""
    batch = [
        Mutation(PUT, "a", b"1", None, None, None, new_origin("alice", 0)),
        Mutation(DELETE, "a", b"", None, None, None, new_origin("bob", 0, Reason.DELETED)),
        Mutation(PUT, "c", b"3"),
        Mutation(PUT, "d", b"4", None, None, None, new_origin("alice", 0)),
    ]
    clock = iter([55, 66])
    assert sequence_batch(batch, 1, _never_read, now=lambda: next(clock)) == [
        Event(1, PUT, "a", b"1", origin=new_origin("alice", 55)),
        Event(2, DELETE, "a", b"", origin=new_origin("bob", 55, Reason.DELETED)),
        Event(3, PUT, "c", b"3"),
        Event(4, PUT, "d", b"4", origin=new_origin("alice", 55)),
    ]


def test_a_batch_without_origins_reads_no_clock() -> None:
    """Unattributed writes (an embedded store, a replica's follower) stay as they were: no origin, no clock."""

    def clock() -> int:
        raise AssertionError("the clock was read")

    batch = [Mutation(PUT, "a", b"1"), Mutation(DELETE, "b", b"")]
    assert sequence_batch(batch, 3, _never_read, now=clock) == [Event(3, PUT, "a", b"1"), Event(4, DELETE, "b")]


def test_a_stamped_origin_leaves_its_history_entry_to_reference_counting() -> None:
    """The origin a write is stamped with is an exact tuple, so the collector untracks it and the history's entry.

    A NamedTuple origin kept every retained change tracked: each collection walked the whole history, about
    1,300 instructions a PUT (bench/instructions.py).
    """
    store = Store()
    batch = [Mutation(PUT, "a", b"1", None, None, None, new_origin("ci-token", 0))]
    (event,) = sequence_batch(batch, 1, _never_read, now=lambda: 1234)
    assert isinstance(event, Event) and type(event.origin) is tuple
    store.apply(event)
    gc.collect()  # a collection untracks a tuple whose items are untracked, in the order it meets them:
    gc.collect()  # the entry may come before its origin in the first
    (change,) = store.history._changes
    assert change[5] == ("ci-token", 1234, 0)
    assert not gc.is_tracked(change[5]) and not gc.is_tracked(change)
