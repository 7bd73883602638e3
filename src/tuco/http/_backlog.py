"""What the streams of one server hold unsent, counted once per frame, and which streams to cut when it is too much.

A watch stream hands its connection the frames every other watcher sends too
(:class:`~tuco.http.sse.FrameCache`), and the transport keeps a reference to
each piece until the kernel took it: a thousand watchers stuck on the same
256 KiB change hold one frame, not a thousand. So the memory streams cost is
the *distinct* pieces still queued somewhere. Each stream keeps the pieces it
wrote, in order; the transport's unsent bytes are the tail of them, so the
pieces before that tail were sent and are let go. A piece counts while any
stream holds it.

Each stream's own queue is bounded by its connection's flow control (the
transport's high-water mark is the per-watcher bound: past it the stream waits
for its client). The total is bounded here: when a write takes it past
``max_bytes``, the streams whose clients stopped reading (paused, the longest
first) are cut off until it fits. A stream whose client reads on is never cut
for the total.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

__all__ = ["StreamBacklog", "StreamBacklogs"]


class StreamBacklogs:
    """The distinct bytes all streams of one server hold unsent, and the streams that stopped draining."""

    __slots__ = ("_held", "_stalled", "cut_off", "max_bytes", "total")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.total = 0
        """Bytes of the distinct pieces some stream's transport still holds."""
        self.cut_off = 0
        """Streams cut off because the total was over ``max_bytes`` (a counter)."""
        self._held: dict[int, list[int]] = {}  # id(piece) -> [streams holding it, its size]
        self._stalled: dict[StreamBacklog, None] = {}  # paused streams, longest paused first

    def open(self, cut: Callable[[], None]) -> StreamBacklog:
        """A new stream's account; ``cut`` drops its connection (called when the total needs its room)."""
        return StreamBacklog(self, cut)

    @property
    def stalled(self) -> int:
        return len(self._stalled)

    def _hold(self, piece: bytes) -> None:
        entry = self._held.get(id(piece))
        if entry is None:
            self._held[id(piece)] = [1, len(piece)]
            self.total += len(piece)
        else:
            entry[0] += 1

    def _let_go(self, piece: bytes) -> None:
        entry = self._held[id(piece)]
        entry[0] -= 1
        if not entry[0]:
            del self._held[id(piece)]
            self.total -= entry[1]

    def _make_room(self, writer: StreamBacklog) -> None:
        """Cut the longest-paused streams (never ``writer``) while the total is over the bound."""
        stalled = self._stalled
        while self.total > self.max_bytes and stalled:
            oldest = next(iter(stalled))
            if oldest is writer:
                if len(stalled) == 1:
                    return
                del stalled[oldest]
                stalled[oldest] = None  # the writer goes last: look at the next one
                continue
            self.cut_off += 1
            oldest.cut()


class StreamBacklog:
    """One stream's unsent pieces, oldest first; held (and counted in the total) until its transport sent them."""

    __slots__ = ("_cut", "_owner", "_pieces", "_queued")

    def __init__(self, owner: StreamBacklogs, cut: Callable[[], None]) -> None:
        self._owner = owner
        self._cut = cut
        self._pieces: collections.deque[bytes] = collections.deque()
        self._queued = 0

    @property
    def queued(self) -> int:
        """Bytes written and, as far as the last look at the transport tells, not yet sent."""
        return self._queued

    def wrote(self, pieces: Iterable[bytes], unsent: int) -> None:
        """``pieces`` were written; ``unsent`` is the transport's buffer now. Cuts stalled streams if over the bound."""
        owner = self._owner
        for piece in pieces:
            self._pieces.append(piece)
            self._queued += len(piece)
            owner._hold(piece)
        self.sent(unsent)
        if owner.total > owner.max_bytes:
            owner._make_room(self)

    def sent(self, unsent: int) -> None:
        """The transport holds ``unsent`` bytes: let go of the pieces before them."""
        pieces = self._pieces
        while pieces and self._queued - len(pieces[0]) >= unsent:
            piece = pieces.popleft()
            self._queued -= len(piece)
            self._owner._let_go(piece)

    def paused(self) -> None:
        """Its client stopped taking what is sent (the transport is over its high-water mark)."""
        self._owner._stalled.setdefault(self)

    def resumed(self) -> None:
        self._owner._stalled.pop(self, None)

    def cut(self) -> None:
        """Drop the connection (what it holds is let go at once)."""
        self.close()
        self._cut()

    def close(self) -> None:
        """The stream ended or its connection is gone: let go of everything it holds."""
        self.resumed()
        self.sent(0)
