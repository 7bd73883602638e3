"""Server-Sent Events framing (the WHATWG ``text/event-stream`` format) for ``GET /v1/watch``.

Every frame's ``id:`` is a revision, so a client's ``Last-Event-ID`` says
exactly where it stopped: a change's id is its revision, a progress frame's
the revision up to which every change was already examined, a cancel
frame's the last revision the stream covered. Data is one line of JSON
(which escapes CR and LF), so no frame can split another.
"""

from __future__ import annotations

import base64
import json

from tuco.core.watch import WatchEvent

__all__ = ["HEADERS", "cancel_frame", "event_frame", "heartbeat_frame", "opening_frame", "progress_frame"]

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
