"""The streams' unsent bytes: a shared piece counted once, sent pieces let go, the longest-stuck streams cut first."""

from __future__ import annotations

from collections.abc import Callable

from tuco.core.watch import WatchEvent
from tuco.http import sse
from tuco.http._backlog import StreamBacklog, StreamBacklogs


class Cuts:
    """Records which streams were cut, in order."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def of(self, name: str) -> Callable[[], None]:
        return lambda: self.order.append(name)


def test_a_piece_many_streams_hold_counts_once_and_goes_when_the_last_has_sent_it() -> None:
    """Three streams queueing one 300 KB frame hold 300 KB, not 900; it leaves the total when all three sent it."""
    backlogs = StreamBacklogs(10 << 20)
    frame = bytes(300_000)
    streams = [backlogs.open(lambda: None) for _ in range(3)]
    for stream in streams:
        stream.wrote((b"493e0\r\n", frame, b"\r\n"), unsent=300_009)
    assert backlogs.total == len(frame) + 7 + 2
    streams[0].sent(0)
    streams[1].sent(2)  # the frame left, its closing CRLF did not
    assert backlogs.total == len(frame) + 7 + 2
    streams[2].close()
    assert backlogs.total == 2
    assert streams[1].queued == 2
    streams[1].sent(0)
    assert backlogs.total == 0


def test_what_the_transport_holds_is_the_tail_of_what_was_written() -> None:
    """With 150 bytes unsent of 100 + 100 + 100 written, the first piece was sent; a piece partly sent is kept."""
    backlogs = StreamBacklogs(1 << 20)
    stream = backlogs.open(lambda: None)
    pieces = (b"a" * 100, b"b" * 100, b"c" * 100)
    stream.wrote(pieces, unsent=150)
    assert (stream.queued, backlogs.total) == (200, 200)
    stream.sent(100)
    assert (stream.queued, backlogs.total) == (100, 100)


def _stuck(backlogs: StreamBacklogs, cuts: Cuts, name: str, size: int) -> StreamBacklog:
    stream = backlogs.open(cuts.of(name))
    stream.wrote((bytes(size),), unsent=size)
    stream.paused()
    return stream


def test_over_the_total_the_streams_stuck_longest_are_cut_first_and_the_writer_never() -> None:
    """A write past the bound cuts paused streams oldest first until it fits; the writer and readers stay."""
    cuts = Cuts()
    backlogs = StreamBacklogs(1000)
    first = _stuck(backlogs, cuts, "first", 300)
    _stuck(backlogs, cuts, "second", 300)
    reading = backlogs.open(cuts.of("reading"))
    reading.wrote((bytes(200),), unsent=200)  # queued but not paused: its client reads
    assert backlogs.total == 800 and cuts.order == []
    writer = _stuck(backlogs, cuts, "writer", 100)
    first.resumed()
    first.paused()  # stuck again: now the most recent
    writer.wrote((bytes(450),), unsent=550)
    assert cuts.order == ["second", "first"]
    assert backlogs.total == 750 and backlogs.cut_off == 2 and backlogs.stalled == 1


def test_when_only_the_writer_is_stuck_nothing_is_cut() -> None:
    """Nothing else to cut: the writer goes on (it is the one whose client just took something)."""
    cuts = Cuts()
    backlogs = StreamBacklogs(100)
    writer = _stuck(backlogs, cuts, "writer", 50)
    writer.wrote((bytes(500),), unsent=550)
    assert cuts.order == [] and backlogs.total == 550


def test_a_frame_is_encoded_once_for_every_watcher() -> None:
    """The same change gives the same bytes object; a change read back from a log (no create_revision) is not kept."""
    cache = sse.FrameCache(max_bytes=1 << 20)
    event = WatchEvent(7, "put", "k", b"v" * 1000, 3, 2)
    frame = cache.frame(event)
    assert frame == sse.event_frame(event)
    assert cache.frame(WatchEvent(7, "put", "k", b"v" * 1000, 3, 2)) is frame
    from_log = WatchEvent(8, "put", "k", b"w", None, None)
    assert cache.frame(from_log) == sse.event_frame(from_log) and len(cache) == 1
    deleted = WatchEvent(9, "delete", "k", b"", None, None)
    assert cache.frame(deleted) is cache.frame(deleted)


def test_the_frame_cache_keeps_the_newest_frames_within_its_bound() -> None:
    """Past its bound the oldest frames go; a frame larger than the bound is never kept; clear empties it."""
    size = len(sse.event_frame(WatchEvent(1, "put", "k", b"x" * 3000, 1, 1)))
    cache = sse.FrameCache(max_bytes=size * 3)
    for revision in range(1, 6):
        cache.frame(WatchEvent(revision, "put", "k", b"x" * 3000, 1, revision))
    assert len(cache) == 3 and cache.retained_bytes <= size * 3
    fourth = cache.frame(WatchEvent(4, "put", "k", b"x" * 3000, 1, 4))
    assert cache.frame(WatchEvent(4, "put", "k", b"x" * 3000, 1, 4)) is fourth
    cache.frame(WatchEvent(6, "put", "k", b"x" * 30_000, 1, 6))
    assert len(cache) == 3
    cache.clear()
    assert (len(cache), cache.retained_bytes) == (0, 0)
