"""``GET /v1/snapshot`` (admin): the whole state at one revision, streamed while the server keeps serving.

The guard has authorized the request (admin on every key). The body is the
snapshot format of :mod:`tuco.core.snapshot`; ``X-Tuco-Revision`` is the
revision it is the state at. A snapshot abandoned midway (too many writes
during it) ends without its trailer, which every reader refuses.
"""

from __future__ import annotations

import structlog

from tuco.errors import LogError, SnapshotError
from tuco.http.answers import error_answer
from tuco.http.handlers._base import Context
from tuco.http.messages import Answer, Request, Response, StreamResponse
from tuco.snapshotting import DatabaseSnapshot, SnapshotStream

__all__ = ["CONTENT_TYPE", "snapshot"]

CONTENT_TYPE = b"application/vnd.tuco.snapshot"
_logger = structlog.get_logger("tuco.snapshot")


def snapshot(ctx: Context, request: Request, segment: bytes) -> Answer:
    if ctx.service.reads_through:  # from the database: opening it waits for a transaction
        return _from_database(ctx, request)
    try:
        chunks = ctx.service.snapshot()
    except SnapshotError as exc:
        return error_answer(exc)
    return _answer(request, chunks)


async def _from_database(ctx: Context, request: Request) -> Response | StreamResponse:
    try:
        chunks = await ctx.service.open_snapshot()
    except (SnapshotError, LogError) as exc:
        return error_answer(exc)
    if request.method == b"HEAD":
        await chunks.aclose()  # ends the database's transaction now
    return _answer(request, chunks)


def _answer(request: Request, chunks: SnapshotStream | DatabaseSnapshot) -> Response | StreamResponse:
    revision = chunks.revision
    headers = ((b"X-Tuco-Revision", str(revision).encode()), (b"Cache-Control", b"no-store"))
    if request.method == b"HEAD":
        chunks.close()
        return Response(200, b"", CONTENT_TYPE, headers)
    return StreamResponse(200, _Logged(chunks, revision), CONTENT_TYPE, headers)


class _Logged:
    """The chunks, with a log line at the end; abandoned (too many writes), the stream just stops, untrailed."""

    __slots__ = ("_chunks", "_revision", "_sent")

    def __init__(self, chunks: SnapshotStream | DatabaseSnapshot, revision: int) -> None:
        self._chunks = chunks
        self._revision = revision
        self._sent = 0

    def __aiter__(self) -> _Logged:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._chunks.__anext__()
        except SnapshotError as exc:
            _logger.warning("snapshot_abandoned", revision=self._revision, sent_bytes=self._sent, reason=str(exc))
            raise StopAsyncIteration from None
        except StopAsyncIteration:
            _logger.info("snapshot_sent", revision=self._revision, bytes=self._sent)
            raise
        self._sent += len(chunk)
        return chunk

    async def aclose(self) -> None:
        await self._chunks.aclose()
