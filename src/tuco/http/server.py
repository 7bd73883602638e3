"""tuco's own HTTP/1.1 server: httptools' parser on the running (uvloop) event loop.

Why our own: general-purpose Python servers spend most of a GET's time in
their generic machinery (ASGI scopes, header dicts, a task per request). tuco
needs a small part of HTTP/1.1, and :class:`~tuco.http.api.KeyValueAPI`
answers reads synchronously, so a purpose-built ``asyncio.Protocol`` can
answer a GET with a few callbacks and one write and no task or allocation it
does not need. We use llhttp (through httptools) for the parsing, because
parsing HTTP safely is the hard part, and write the connection handling: the
order of pipelined answers, limits, time-outs, back-pressure and shutdown, in
:mod:`tuco.http.connection`.

This module is the lifecycle: settings, binding, the shared date clock, and a
graceful :meth:`NativeServer.aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import ssl as ssl_module

import structlog

from tuco.http._backlog import StreamBacklogs
from tuco.http._clock import Clock, Timer
from tuco.http._context import Handler, ServerContext, ServerSettings
from tuco.http._wire import date_tail
from tuco.http.connection import HttpConnection
from tuco.http.observer import RequestObserver

__all__ = ["Handler", "NativeServer", "ServerSettings", "start_server"]

_logger = structlog.get_logger("tuco.http")

_SSL_HANDSHAKE_TIMEOUT = 10.0
# After the grace period the remaining connections are aborted; this is how long we wait to see them go.
_ABORT_WAIT = 1.0
# Once a crowd of at least this many connections at once has mostly gone, hand back the heap it freed (see _tick).
_CROWD = 256


_DEFAULT_SETTINGS = ServerSettings()


class NativeServer:
    """A listening native server; :meth:`aclose` shuts it down gracefully."""

    def __init__(self, server: asyncio.Server, ctx: ServerContext) -> None:
        self._server = server
        self._ctx = ctx
        self._clock: Timer | None = None
        self._closed = False
        self._trim_tail = False
        self.addresses: list[tuple[str, int]] = [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock in server.sockets
        ]
        self._tick()

    @property
    def connection_count(self) -> int:
        """Connections currently open, TLS handshakes included (refused ones are not counted)."""
        return len(self._ctx.connections)

    @property
    def streams(self) -> StreamBacklogs:
        """What the streams (watches) hold unsent, and how many were cut off for it."""
        return self._ctx.streams

    @property
    def body_bytes_reserved(self) -> int:
        """Bytes of the shared body budget held by requests still being received."""
        return self._ctx.settings.max_buffered_bytes - self._ctx.body_budget

    def _tick(self) -> None:
        """Refresh the Date header once a second, on the second, instead of formatting it per response.

        Also returns memory after a crowd: glibc keeps the heap that thousands of
        connections (TLS state, bodies) freed, so RSS would stay at the peak;
        once three quarters of a crowd have gone (and again when the rest have), it is
        given back. A steady stream of short connections is no crowd and never trims.
        """
        ctx = self._ctx
        clock = ctx.clock
        now = clock.wall()
        ctx.date_tail = date_tail(now)
        self._clock = clock.call_at(clock.now() + 1.0 - now % 1.0, self._tick)
        still_open, crowd = len(ctx.connections), ctx.peak_connections
        if (crowd >= _CROWD and still_open * 4 <= crowd) or (self._trim_tail and not still_open):
            ctx.peak_connections = still_open
            self._trim_tail = still_open > 0  # once more when the rest of the crowd has gone too
            _trim_heap()
            _logger.info("heap_trimmed", crowd=crowd, connections_open=still_open)

    async def _until_empty(self, seconds: float) -> None:
        """Wait until no connection is open, or ``seconds`` have passed on the server's clock."""
        ctx = self._ctx
        if not ctx.connections:
            return
        waiter = ctx.loop.create_task(ctx.wait_empty())
        timer = ctx.clock.call_at(ctx.clock.now() + seconds, waiter.cancel)
        try:
            await asyncio.wait((waiter,))
        finally:  # nothing awaited here
            timer.cancel()
            waiter.cancel()

    async def aclose(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests be answered for up to ``grace`` seconds, then drop the rest.

        Idle connections are closed at once; busy ones get ``Connection: close``
        on their last answer. Handler tasks are not cancelled: a write already
        handed to the log still completes, even if its client is gone.
        """
        if self._closed:
            return
        self._closed = True
        self._server.close()
        ctx = self._ctx
        ctx.closing = True
        for connection in list(ctx.connections):
            connection.shutdown()
        await self._until_empty(grace)
        if ctx.connections:
            for connection in list(ctx.connections):
                connection.abort()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_ABORT_WAIT):
                    await ctx.wait_empty()
        await self._server.wait_closed()
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None


async def start_server(
    handler: Handler,
    *,
    host: str,
    port: int,
    ssl: ssl_module.SSLContext | None = None,
    settings: ServerSettings = _DEFAULT_SETTINGS,
    backlog: int = 2048,
    observer: RequestObserver | None = None,
    clock: Clock | None = None,
    handshake_timeout: float = _SSL_HANDSHAKE_TIMEOUT,
) -> NativeServer:
    """Bind ``host:port`` (0 picks a free port) and serve ``handler`` on the running loop.

    ``observer`` counts every answer (``/metrics``) and writes the access log; ``clock`` times
    the time-outs and the Date header (the loop's by default; tests pass a ManualClock);
    ``handshake_timeout`` bounds a TLS handshake.
    """
    loop = asyncio.get_running_loop()
    # TLS is started by each connection (see connection.py), so the cap counts handshakes too.
    ctx = ServerContext(
        handler, settings, loop, tls=ssl, handshake_timeout=handshake_timeout, observer=observer, clock=clock
    )
    server = await loop.create_server(lambda: HttpConnection(ctx), host, port, backlog=backlog, reuse_address=True)
    return NativeServer(server, ctx)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def _trim_heap() -> None:
    """Free what the crowd left in reference cycles, then return free heap pages to the OS (glibc only).

    Failed TLS handshakes leave exceptions, tracebacks and transports in
    cycles that only a full collection frees; measured: 10,000 silent TLS
    connections ended 5 MB above baseline with the trim alone, 1 to 3 MB with
    both. A full collection is what Python runs by itself now and then anyway;
    here it runs at most once a second, and only after hundreds of clients left.
    """
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
