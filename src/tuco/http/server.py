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
import email.utils
import functools
import gc
import ssl as ssl_module
import time
from dataclasses import dataclass, fields

import structlog

from tuco.errors import ConfigurationError
from tuco.http._backlog import StreamBacklogs
from tuco.http.connection import Handler, HttpConnection, ServerContext
from tuco.http.observer import RequestObserver

__all__ = ["Handler", "NativeServer", "ServerSettings", "start_server"]

_logger = structlog.get_logger("tuco.http")

_SSL_HANDSHAKE_TIMEOUT = 10.0
# After the grace period the remaining connections are aborted; this is how long we wait to see them go.
_ABORT_WAIT = 1.0
# Once a crowd of at least this many connections at once has mostly gone, hand back the heap it freed (see _tick).
_CROWD = 256


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Limits and time-outs of the native server; every one protects it from a client."""

    max_body_bytes: int = 1 << 20
    """A larger body is answered 413 and the connection closed, without reading the rest into memory (0: empty only)."""
    max_header_count: int = 100
    max_header_bytes: int = 16 * 1024
    """Request line plus headers; a longer target gets 414, longer headers 431."""
    request_timeout: float = 30.0
    """From the first byte of a request until its body is complete; also how long a client may refuse to read."""
    keepalive_timeout: float = 5.0
    """How long a connection may sit idle between requests."""
    max_connections: int = 1024
    """Connections beyond it get a 503 and are closed at once; counted from accept, TLS handshakes included."""
    max_buffered_bytes: int = 64 << 20
    """Request bodies being received on all connections together; a body that would pass it gets 503."""
    write_high_water: int = 1 << 20
    """Above this many unsent bytes the server stops reading from that client."""
    max_pipelined: int = 64
    """Answers pending on one connection before the server stops reading from it."""
    stream_backlog_bytes: int = 256 << 10
    """Unsent bytes one stream (a watch) holds before it waits for its client (plus the chunk that passed it)."""
    max_stream_bytes: int = 64 << 20
    """Unsent bytes of all streams together, each shared frame counted once; past it, the streams whose clients
    stopped reading are cut off, the longest stopped first."""

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 0 or (getattr(self, field.name) == 0 and field.name != "max_body_bytes"):
                raise ConfigurationError(
                    f"server setting {field.name} must be positive, not {getattr(self, field.name)}"
                )


_DEFAULT_SETTINGS = ServerSettings()


class NativeServer:
    """A listening native server; :meth:`aclose` shuts it down gracefully."""

    def __init__(self, server: asyncio.Server, ctx: ServerContext) -> None:
        self._server = server
        self._ctx = ctx
        self._clock: asyncio.TimerHandle | None = None
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
        now = time.time()
        ctx.date_tail = b"\r\nDate: " + email.utils.formatdate(now, usegmt=True).encode("ascii") + b"\r\n\r\n"
        self._clock = ctx.loop.call_later(1.0 - now % 1.0, self._tick)
        still_open, crowd = len(ctx.connections), ctx.peak_connections
        if (crowd >= _CROWD and still_open * 4 <= crowd) or (self._trim_tail and not still_open):
            ctx.peak_connections = still_open
            self._trim_tail = still_open > 0  # once more when the rest of the crowd has gone too
            _trim_heap()
            _logger.info("heap_trimmed", crowd=crowd, connections_open=still_open)

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
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await ctx.wait_empty()
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
) -> NativeServer:
    """Bind ``host:port`` (0 picks a free port) and serve ``handler`` on the running loop.

    ``observer`` counts every answer (``/metrics``) and writes the access log.
    """
    loop = asyncio.get_running_loop()
    # TLS is started by each connection (see connection.py), so the cap counts handshakes too.
    ctx = ServerContext(handler, settings, loop, tls=ssl, handshake_timeout=_SSL_HANDSHAKE_TIMEOUT, observer=observer)
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
