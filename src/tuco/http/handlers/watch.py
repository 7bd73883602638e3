"""The watch stream's pieces: its frames gathered into chunks, its headers, and the 409/410 answers of a resume point.

The handler in :mod:`tuco.http.api` opens the watch through the Service; this
module turns the watch's steps into Server-Sent Events chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from tuco.errors import HistoryCompactedError, RevisionAheadError
from tuco.http import sse
from tuco.http.answers import json_response
from tuco.http.messages import Request, Response
from tuco.watchers import Watch, WatchStep

__all__ = ["EVENT_STREAM", "compacted", "cors", "revision_ahead", "watch_stream"]

EVENT_STREAM = b"text/event-stream"
_RETRY_MS = 1000  # what EventSource waits before reconnecting after the stream ends
_CHUNK_BYTES = 64 * 1024  # frames gathered into one chunk, at most (one frame may be larger)
_SHARED_FRAME_BYTES = 16 * 1024  # a frame this large is sent as it is, shared, never copied into a chunk


async def watch_stream(watch: Watch, frames: sse.FrameCache) -> AsyncIterator[bytes]:
    """The frames of one watch: ``retry`` first, then events, heartbeats and progress, a cancel frame last.

    Small frames are gathered into one chunk; a large one is its own chunk, the
    very bytes object every other watcher sends too (no copy per watcher).
    """
    try:
        yield sse.opening_frame(_RETRY_MS, watch.after)
        while True:
            step = await watch.next()
            if step.kind is WatchStep.EVENTS:
                chunk: list[bytes] = []
                size = 0
                for event in step.events:
                    frame = frames.frame(event)
                    if len(frame) >= _SHARED_FRAME_BYTES:
                        if chunk:
                            yield b"".join(chunk)
                            chunk, size = [], 0
                        yield frame
                        continue
                    chunk.append(frame)
                    size += len(frame)
                    if size >= _CHUNK_BYTES:
                        yield b"".join(chunk)
                        chunk, size = [], 0
                if chunk:
                    yield b"".join(chunk)
            elif step.kind is WatchStep.PROGRESS:
                yield sse.heartbeat_frame() + sse.progress_frame(step.revision)
            else:
                yield sse.cancel_frame(step.reason, step.revision)
                return
    finally:
        watch.close()
        if watch.last:
            frames.clear()  # nobody watches: the frames kept for them go


def revision_ahead(exc: RevisionAheadError) -> Response:
    """409 revision_ahead, with the store's revision: the client re-reads, then watches from there."""
    body = {"error": exc.code, "message": str(exc), "revision": exc.revision, "requested": exc.requested}
    return json_response(exc.status, body)


def compacted(exc: HistoryCompactedError) -> Response:
    return json_response(exc.status, {"error": exc.code, "message": str(exc), "oldest_revision": exc.oldest})


def cors(request: Request, allowed: frozenset[str]) -> tuple[tuple[bytes, bytes], ...]:
    """``Access-Control-Allow-Origin`` for a page of an allowed origin (EventSource across origins needs it)."""
    if not allowed:
        return ()
    origin = request.header(b"origin")
    if origin is None:
        return ()
    if "*" in allowed:
        return ((b"Access-Control-Allow-Origin", b"*"),)
    try:
        text = origin.decode("ascii")
    except UnicodeDecodeError:
        return ()
    if text in allowed:
        return ((b"Access-Control-Allow-Origin", origin), (b"Vary", b"Origin"))
    return ()
