"""``GET /v1/watch``: the handler, and the stream's pieces: its frames gathered into chunks, its headers, and the
409/410 answers of a resume point.

The handler opens the watch through the Service; :class:`WatchStream` turns the
watch's steps into Server-Sent Events chunks.
"""

from __future__ import annotations

from collections import deque
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
from tuco.watchers import Step, Watch, WatchStep

if TYPE_CHECKING:
    from tuco.http.handlers._base import Context

__all__ = ["EVENT_STREAM", "WatchStream", "compacted", "revision_ahead", "watch"]

EVENT_STREAM = b"text/event-stream"
_RETRY_MS = 1000  # what EventSource waits before reconnecting after the stream ends
_CHUNK_BYTES = 64 * 1024  # frames gathered into one chunk, at most (one frame may be larger)
_SHARED_FRAME_BYTES = 16 * 1024  # a frame this large is sent as it is, shared, never copied into a chunk

_RETRY_SOON: Headers = ((b"Retry-After", b"1"),)


class WatchStream:
    """The frames of one watch: ``retry`` first, then events, heartbeats and progress, a cancel frame last.

    Small frames are gathered into one chunk; a large one is its own chunk, the
    very bytes object every other watcher sends too (no copy per watcher). An
    iterator class rather than an async generator, which mypyc cannot compile;
    the watch is closed (and the frame cache emptied when it was the last) once
    the stream ends, fails, or is closed by the server.
    """

    __slots__ = ("_closed", "_ended", "_frames", "_pending", "_watch")

    def __init__(self, watch: Watch, frames: sse.FrameCache) -> None:
        self._watch = watch
        self._frames = frames
        self._pending: deque[bytes] = deque((sse.opening_frame(_RETRY_MS, watch.after),))
        self._ended = False
        self._closed = False

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> bytes:
        pending = self._pending
        while not pending:
            if self._ended or self._closed:
                self._close()
                raise StopAsyncIteration
            failure: BaseException | None = None
            try:
                step = await self._watch.next()
            except BaseException as exc:  # cancelled or failed: the watch is closed, then that goes on
                failure = exc
            if failure is not None:
                self._close()
                raise failure
            self._take(step)
        return pending.popleft()

    def _take(self, step: Step) -> None:
        """The chunks of one step of the watch, queued to send."""
        pending = self._pending
        if step.kind is WatchStep.EVENTS:
            frames = self._frames
            chunk: list[bytes] = []
            size = 0
            for event in step.events:
                frame = frames.frame(event)
                if len(frame) >= _SHARED_FRAME_BYTES:
                    if chunk:
                        pending.append(b"".join(chunk))
                        chunk, size = [], 0
                    pending.append(frame)
                    continue
                chunk.append(frame)
                size += len(frame)
                if size >= _CHUNK_BYTES:
                    pending.append(b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                pending.append(b"".join(chunk))
        elif step.kind is WatchStep.PROGRESS:
            pending.append(sse.heartbeat_frame() + sse.progress_frame(step.revision))
        else:
            pending.append(sse.cancel_frame(step.reason, step.revision))
            self._ended = True

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        watch = self._watch
        watch.close()
        if watch.last:
            self._frames.clear()  # nobody watches: the frames kept for them go

    async def aclose(self) -> None:
        """End the stream now (the server closes a stream it stops sending)."""
        self._close()


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
    return StreamResponse(200, WatchStream(opened, ctx.frames), EVENT_STREAM, headers)


async def _watch_after_catch_up(ctx: Context, opening: _Opening) -> Response | StreamResponse:
    """A resume point past the store: apply what the log has first; still ahead, it is refused (409)."""
    try:
        await ctx.service.catch_up()
    except LogError as exc:
        return refusal(exc, "no watch", "cannot reach the log to tell whether that revision exists")
    return _open_watch(ctx, opening)
