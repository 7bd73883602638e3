"""Server-Sent Events framing (the WHATWG ``text/event-stream`` format) for ``GET /v1/watch``.

Every frame's ``id:`` is a revision, so a client's ``Last-Event-ID`` says
exactly where it stopped: a change's id is its revision, a progress frame's
the revision up to which every change was already examined, a cancel
frame's the last revision the stream covered. Data is one line of JSON
(which escapes CR and LF), so no frame can split another.

A change's frame is the same bytes for every watcher, so :class:`FrameCache`
encodes it once: a thousand watchers of a 256 KiB value share one frame of
about 350 KiB instead of each making (and queueing) its own base64 copy.
"""

from __future__ import annotations

import base64
import json

from tuco.core.origin import origin_fields
from tuco.core.watch import WatchEvent

__all__ = [
    "FRAME_CACHE_BYTES",
    "HEADERS",
    "FrameCache",
    "cancel_frame",
    "event_frame",
    "heartbeat_frame",
    "opening_frame",
    "progress_frame",
]

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),  # nginx and kin: pass each event on at once
)
"""Static headers of every watch stream (the content type is ``text/event-stream``)."""

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_b64 = base64.b64encode


def opening_frame(retry_ms: int, revision: int) -> bytes:
    """The first bytes of a stream: the reconnection delay, and a comment naming where the watch starts."""
    return b"retry: %d\n: watching after revision %d\n\n" % (retry_ms, revision)


def event_frame(event: WatchEvent) -> bytes:
    """The ``put`` or ``delete`` frame of one change."""
    if event.type == "put":
        data: dict[str, object] = {
            "revision": event.revision,
            "key": event.key,
            "value": _b64(event.value).decode("ascii"),
            "mod_revision": event.revision,
        }
        if event.create_revision is not None:
            data["create_revision"] = event.create_revision
            data["version"] = event.version
    else:
        data = {"revision": event.revision, "key": event.key}
    if event.origin is not None:
        data.update(origin_fields(event.origin, event.type == "delete"))
    return b"id: %d\nevent: %b\ndata: %b\n\n" % (event.revision, event.type.encode(), _dumps(data).encode())


def heartbeat_frame() -> bytes:
    """A comment: keeps proxies and clients from timing an idle stream out."""
    return b": heartbeat\n\n"


def progress_frame(revision: int) -> bytes:
    """Every change up to ``revision`` was examined (none left for this watcher): resume after it."""
    return b"id: %d\nevent: progress\ndata: %b\n\n" % (revision, _dumps({"revision": revision}).encode())


def cancel_frame(reason: str, resume_revision: int) -> bytes:
    """The stream's last frame: why it ends, and the ``start_revision`` that continues it without a gap."""
    data = _dumps({"reason": reason, "resume_revision": resume_revision}).encode()
    return b"id: %d\nevent: cancel\ndata: %b\n\n" % (max(resume_revision - 1, 0), data)


FRAME_CACHE_BYTES = 8 << 20
"""Frames of the newest changes kept encoded for the watchers still to send them (a larger frame is not kept)."""


class FrameCache:
    """The frames of recent changes by revision and key, each encoded once and shared by every watcher that sends it.

    Watchers that keep up ask for the same newest revisions within a few loop
    turns, so a small cache serves them all; one catching up from further back
    encodes its own (and the oldest frames make room first). A change read back
    from a shared log's table is not the frame memory would give (it carries no
    ``create_revision``), so it is encoded each time and never cached.
    """

    __slots__ = ("_bytes", "_frames", "max_bytes")

    def __init__(self, max_bytes: int = FRAME_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._frames: dict[tuple[int, str], bytes] = {}  # by revision and key: a transaction's share a revision
        self._bytes = 0

    @property
    def retained_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, event: WatchEvent) -> bytes:
        """The frame of ``event``: the cached bytes when its revision was encoded before."""
        if event.create_revision is None and event.type == "put":  # read back from a log
            return event_frame(event)
        frames = self._frames
        place = (event.revision, event.key)
        found = frames.get(place)
        if found is not None:
            return found
        frame = event_frame(event)
        size = len(frame)
        if size <= self.max_bytes:
            frames[place] = frame
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= len(frames.pop(next(iter(frames))))
        return frame

    def clear(self) -> None:
        """Drop every frame (nobody watches any more: give the memory back)."""
        self._frames = {}
        self._bytes = 0
