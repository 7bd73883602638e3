"""A streamed answer (a watch) on a native connection: chunks written as they come, at the pace of the client.

A :class:`~tuco.http.messages.StreamResponse` is sent with
``Transfer-Encoding: chunked`` by a task that writes each chunk as it comes
and waits while the connection's writing is paused; a client that goes away
or stops sending cancels the task, which closes the chunk iterator.

* **Never copied.** A large chunk is written as it is, between its framing
  lines: a watch frame is one bytes object shared by every watcher.
* **Bounded.** While streaming, the transport's high-water mark is the
  per-stream bound (``stream_backlog_bytes``), the kernel's share of it is
  capped too, and what all streams hold unsent is counted, each shared piece
  once, against ``max_stream_bytes`` (:mod:`tuco.http._backlog`): over it, the
  streams whose clients stopped reading are cut off, the longest stopped first.
* **Ends cleanly.** Whatever ends the stream, its iterator is closed and its
  backlog settled; the clean-up awaits after the ``try``, never in a
  ``finally`` or ``except`` (a coroutine compiled by mypyc that suspends there
  leaves the exception as the thread's handled one; see ``bench/compiled.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Final

import structlog

from tuco.http._backlog import StreamBacklog
from tuco.http._context import ServerContext
from tuco.http._wire import CLOSE, LAST_CHUNK, frame_chunk

__all__ = ["ChunkedStream"]

_logger = structlog.get_logger("tuco.http")

# What the kernel may hold unsent for a stream's socket: this fraction of its backlog bound.
_KERNEL_SHARE: Final = 16
_NOTSENT_LOWAT: Final[int | None] = getattr(socket, "TCP_NOTSENT_LOWAT", None)


class ChunkedStream:
    """The body of one streamed answer being sent, and its share of what the server's streams hold unsent.

    The connection tells it when writing pauses and resumes and when the client
    is gone; it tells the connection, through ``ended(mode, cut)``, when the
    last chunk is in the output buffer, or (``cut``) when the stream failed or
    was cancelled and nothing more is to be sent. ``lapsed()`` says whether the client certificate has expired.
    """

    __slots__ = ("_backlog", "_client", "_drained", "_ended", "_high_water", "_lapsed", "_paused", "_transport", "task")

    def __init__(
        self,
        ctx: ServerContext,
        transport: asyncio.Transport | None,
        paused: bool,
        client: str | None,
        lapsed: Callable[[], bool],
        ended: Callable[[int, bool], None],
    ) -> None:
        self._transport = transport
        self._paused = paused
        self._client = client
        self._lapsed = lapsed
        self._ended = ended
        self._high_water = ctx.settings.write_high_water
        self._backlog: StreamBacklog | None = None
        self._drained: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None
        """The task sending the chunks; None once the stream has ended."""

    def start(self, ctx: ServerContext, chunks: AsyncIterator[bytes], out: list[bytes], head_only: bool) -> None:
        """Bound the transport for streaming and send ``chunks`` from a task (none for a HEAD)."""
        transport = self._transport
        if transport is not None and not head_only:
            backlog_bytes = ctx.settings.stream_backlog_bytes
            transport.set_write_buffer_limits(high=backlog_bytes)
            _limit_kernel_buffer(transport, backlog_bytes // _KERNEL_SHARE)
            self._backlog = ctx.streams.open(self._cut_off)
            if self._paused:
                self._backlog.paused()
        self.task = ctx.loop.create_task(self._send(chunks, out, head_only))

    def paused(self) -> None:
        """The connection's writing is paused: the client is not reading."""
        self._paused = True
        if self._backlog is not None:
            self._backlog.paused()

    def resumed(self) -> None:
        """Writing resumed: count what was sent, and let the task write on."""
        self._paused = False
        backlog = self._backlog
        transport = self._transport
        if backlog is not None and transport is not None:
            backlog.resumed()
            backlog.sent(transport.get_write_buffer_size())
            if self.task is None and not backlog.queued:
                backlog.close()
                self._backlog = None
        if self._drained is not None:
            self._drained.set()

    def cancel(self) -> None:
        """The client stopped sending (a watch would wait for it forever): end the stream."""
        if self.task is not None:
            self.task.cancel()

    def lost(self) -> None:
        """The connection is gone: nothing it held counts any more, and nobody reads the stream."""
        self._transport = None
        if self._backlog is not None:
            self._backlog.close()
        if self.task is not None:
            self.task.cancel()  # a stream may wait for its next chunk indefinitely

    def _cut_off(self) -> None:
        """Drop a stream whose client stopped reading: the streams together hold too much (see _backlog)."""
        _logger.warning("stream_cut_off", client=self._client, reason="the streams' unsent bytes are over the bound")
        if self._transport is not None:
            self._transport.abort()

    def _write_chunk(self, chunk: bytes) -> None:
        """Frame and write one chunk; a large one is handed over as it is (shared, never copied)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pieces = frame_chunk(chunk)
        if len(pieces) == 1:
            transport.write(pieces[0])
        else:
            transport.writelines(pieces)
        backlog = self._backlog
        if backlog is not None:
            backlog.wrote(pieces, transport.get_write_buffer_size())

    async def _send(self, chunks: AsyncIterator[bytes], out: list[bytes], head_only: bool) -> None:
        """Send the chunks, then close the iterator and end the stream, whatever happened.

        A cancellation is kept, the clean-up done, and the cancellation raised again.
        """
        mode = CLOSE  # a stream is the last answer on its connection
        interrupted: BaseException | None = None
        failed = False
        try:
            if not head_only:
                async for chunk in chunks:
                    if self._transport is None:
                        break
                    if self._lapsed():
                        break  # ended like any stream, then the connection is closed
                    if chunk:
                        self._write_chunk(chunk)
                    while self._paused and self._transport is not None:
                        if self._drained is None:
                            self._drained = asyncio.Event()
                        self._drained.clear()
                        await self._drained.wait()
                if self._transport is not None:
                    out.append(LAST_CHUNK)
        except Exception as exc:  # a chunk cannot be followed by an error answer: cut the connection
            _logger.error("stream_failed", exc_info=exc)
            failed = True
            if self._transport is not None:
                out.clear()
                self._transport.abort()
        except BaseException as exc:  # cancelled (the client went): clean up below, then let it through
            interrupted = exc
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            await closing()
        self.task = None
        self._end_backlog()
        self._ended(mode, failed or interrupted is not None)
        if interrupted is not None:
            raise interrupted

    def _end_backlog(self) -> None:
        """The stream is over: the usual high-water mark again; its pieces count until they are sent."""
        backlog = self._backlog
        transport = self._transport
        if backlog is None:
            return
        if transport is None or transport.is_closing():
            backlog.sent(0)
        else:
            transport.set_write_buffer_limits(high=self._high_water)
            backlog.sent(transport.get_write_buffer_size())
        if not backlog.queued:
            backlog.close()
            self._backlog = None


def _limit_kernel_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    """Cap what the kernel holds unsent for this socket: for a client that does not read, it is a copy per client.

    Left alone, the send buffer autotunes to 4 MiB (``tcp_wmem``) per connection: a
    thousand watchers that never read would hold 4 GB of kernel memory, past the
    machine's TCP memory pressure point, and copying it stalls the event loop.
    ``TCP_NOTSENT_LOWAT`` bounds only the bytes not yet sent, so a reader far away
    keeps a full window in flight; where it is missing, the whole send buffer is capped.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    lowat = _NOTSENT_LOWAT  # a local: mypyc miscompiles a narrowed Final[int | None] global
    with contextlib.suppress(OSError):
        if lowat is not None:
            sock.setsockopt(socket.IPPROTO_TCP, lowat, size)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
