"""A batch's writes carry their mutations' origins, stamped with one moment by the log's clock (sequence_batch)."""

from __future__ import annotations

from tuco.core.events import Event, EventType
from tuco.core.origin import Origin, Reason
from tuco.log._sequencing import Mutation, sequence_batch

PUT, DELETE = EventType.PUT, EventType.DELETE


def _never_read(key: str) -> int:
    raise AssertionError(f"a batch without conditions read {key!r}")


def test_one_origin_for_the_whole_batch_is_stamped_once() -> None:
    """Every write of one principal gets the same stamped origin object, at the clock's moment."""
    by = Origin("ci-token", 0)
    batch = [Mutation(PUT, "a", b"1", None, None, None, by), Mutation(PUT, "b", b"2", None, None, None, by)]
    events = sequence_batch(batch, 7, _never_read, now=lambda: 1234)
    assert events == [
        Event(7, PUT, "a", b"1", origin=Origin("ci-token", 1234)),
        Event(8, PUT, "b", b"2", origin=Origin("ci-token", 1234)),
    ]
    assert isinstance(events[0], Event) and isinstance(events[1], Event)
    assert events[0].origin is events[1].origin


def test_mixed_origins_each_keep_their_own() -> None:
    """Writes of several principals, or none, in one batch: each event names its own, all at one moment."""
    batch = [
        Mutation(PUT, "a", b"1", None, None, None, Origin("alice", 0)),
        Mutation(DELETE, "a", b"", None, None, None, Origin("bob", 0, Reason.DELETED)),
        Mutation(PUT, "c", b"3"),
        Mutation(PUT, "d", b"4", None, None, None, Origin("alice", 0)),
    ]
    clock = iter([55, 66])
    assert sequence_batch(batch, 1, _never_read, now=lambda: next(clock)) == [
        Event(1, PUT, "a", b"1", origin=Origin("alice", 55)),
        Event(2, DELETE, "a", b"", origin=Origin("bob", 55, Reason.DELETED)),
        Event(3, PUT, "c", b"3"),
        Event(4, PUT, "d", b"4", origin=Origin("alice", 55)),
    ]


def test_a_batch_without_origins_reads_no_clock() -> None:
    """Unattributed writes (an embedded store, a replica's follower) stay as they were: no origin, no clock."""

    def clock() -> int:
        raise AssertionError("the clock was read")

    batch = [Mutation(PUT, "a", b"1"), Mutation(DELETE, "b", b"")]
    assert sequence_batch(batch, 3, _never_read, now=clock) == [Event(3, PUT, "a", b"1"), Event(4, DELETE, "b")]
