"""``GET /v1/watch``: the handler, and the stream's pieces: its frames gathered into chunks, its headers, and the
409/410 answers of a resume point.

The handler opens the watch through the Service; :func:`watch_stream` turns the
watch's steps into Server-Sent Events chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NamedTuple

from tuco.core.tokens import Principal
from tuco.core.watch import Selector
from tuco.errors import (
    HistoryCompactedError,
    InvalidRequestError,
    LogError,
    RevisionAheadError,
    TooManyWatchersError,
)
from tuco.http import sse
from tuco.http.answers import SHUTTING_DOWN, error_answer, json_response, refusal
from tuco.http.messages import Answer, Headers, Request, Response, StreamResponse
from tuco.http.params import watch_params
from tuco.service import Phase
from tuco.watchers import Watch, WatchStep

if TYPE_CHECKING:
    from tuco.http.handlers._base import Context

__all__ = ["EVENT_STREAM", "compacted", "revision_ahead", "watch", "watch_stream"]

EVENT_STREAM = b"text/event-stream"
_RETRY_MS = 1000  # what EventSource waits before reconnecting after the stream ends
_CHUNK_BYTES = 64 * 1024  # frames gathered into one chunk, at most (one frame may be larger)
_SHARED_FRAME_BYTES = 16 * 1024  # a frame this large is sent as it is, shared, never copied into a chunk

_RETRY_SOON: Headers = ((b"Retry-After", b"1"),)


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


def watch(ctx: Context, request: Request, segment: bytes) -> Answer:
    service = ctx.service
    if service.phase is Phase.STOPPING:
        return SHUTTING_DOWN
    try:
        selector, after = watch_params(request, service.revision)
    except InvalidRequestError as exc:
        return error_answer(exc)
    headers = sse.HEADERS  # CORS fields, for configured origins, are added by tuco.http.cors
    opening = _Opening(request.method == b"HEAD", selector, after, headers, request.principal)
    if after > service.revision:
        # Another replica's revision, or one this store never reached (it was restored from a backup).
        return _watch_after_catch_up(ctx, opening)
    return _open_watch(ctx, opening)


class _Opening(NamedTuple):
    """A watch asked for: HEAD or GET, what it selects, after which revision, its headers, and by whom."""

    head: bool
    selector: Selector
    after: int
    headers: Headers
    by: Principal | None


def _open_watch(ctx: Context, opening: _Opening) -> Response | StreamResponse:
    service = ctx.service
    head, selector, after, headers, by = opening
    if after > service.revision:
        return revision_ahead(RevisionAheadError(after, service.revision))
    if head:
        # Says whether a GET would stream, without opening a watch.
        if after < service.oldest_revision and not service.reads_back_history:
            return compacted(HistoryCompactedError(service.oldest_revision))
        return Response(200, b"", EVENT_STREAM, headers)
    try:
        opened = service.watch(selector, after, by)
    except HistoryCompactedError as exc:
        return compacted(exc)
    except RevisionAheadError as exc:
        return revision_ahead(exc)
    except TooManyWatchersError as exc:
        return error_answer(exc, fields=_RETRY_SOON)
    return StreamResponse(200, watch_stream(opened, ctx.frames), EVENT_STREAM, headers)


async def _watch_after_catch_up(ctx: Context, opening: _Opening) -> Response | StreamResponse:
    """A resume point past the store: apply what the log has first; still ahead, it is refused (409)."""
    try:
        await ctx.service.catch_up()
    except LogError as exc:
        return refusal(exc, "no watch", "cannot reach the log to tell whether that revision exists")
    return _open_watch(ctx, opening)
