"""What the connections of one native server share, and the settings that bound them.

The server owns one :class:`ServerContext` and hands it to each connection it
accepts; the connection reads its settings and shared state from it and
registers itself in it. So :mod:`tuco.http.connection` depends on this module
and :mod:`tuco.http.server` on both, never the other way round.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Protocol

from tuco.errors import ConfigurationError
from tuco.http._backlog import StreamBacklogs
from tuco.http._clock import Clock
from tuco.http.cors import Cors
from tuco.http.messages import Deferred, Request, Response, StreamResponse
from tuco.http.observer import RequestObserver

__all__ = ["Handler", "Member", "ServerContext", "ServerSettings"]

Handler = Callable[[Request], Response | StreamResponse | Deferred | Awaitable[Response | StreamResponse]]
"""A request to a response, or an awaitable of one."""


_MAY_BE_ZERO = frozenset({"max_body_bytes", "max_txn_body_bytes"})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Limits and time-outs of the native server; every one protects it from a client."""

    max_body_bytes: int = 1 << 20
    """A larger body is answered 413 and the connection closed, without reading the rest into memory (0: empty only)."""
    max_txn_body_bytes: int = 0
    """The same for ``POST /v1/txn``: room for a transaction at its caps (``Limits.txn_body_bytes``); 0: as others."""
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
            if getattr(self, field.name) < 0 or (getattr(self, field.name) == 0 and field.name not in _MAY_BE_ZERO):
                raise ConfigurationError(
                    f"server setting {field.name} must be positive, not {getattr(self, field.name)}"
                )


class Member(Protocol):
    """A connection as the server sees it: it can be asked to finish, or dropped."""

    def shutdown(self) -> None: ...

    def abort(self) -> None: ...


class ServerContext:
    """What all connections of one server share: handler, limits, registry, body budget, Date, clock."""

    __slots__ = (
        "_emptied",
        "body_budget",
        "clock",
        "closing",
        "connections",
        "cors",
        "date_tail",
        "handler",
        "handshake_timeout",
        "loop",
        "observer",
        "peak_connections",
        "settings",
        "streams",
        "tls",
    )

    def __init__(
        self,
        handler: Handler,
        settings: ServerSettings,
        loop: asyncio.AbstractEventLoop,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 10.0,
        observer: RequestObserver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.handler = handler
        # With TUCO_CORS_ORIGINS the handler is the CORS layer's (KeyValueAPI.handle): refusals made before
        # it, by the connections, get its fields too.
        layer = getattr(handler, "__self__", None)
        self.cors: Cors | None = layer if isinstance(layer, Cors) else None
        self.observer = observer
        self.settings = settings
        self.loop = loop
        self.clock = Clock.of_loop(loop) if clock is None else clock
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.connections: set[Member] = set()
        self.peak_connections = 0  # the most open at once since the server last gave freed heap back (server._tick)
        self.closing = False
        # Bytes of request bodies still being received may add up to this, on all connections together.
        self.body_budget = settings.max_buffered_bytes
        # What streams (watches) hold unsent, all connections together.
        self.streams = StreamBacklogs(settings.max_stream_bytes)
        # The end of every response head; the server refreshes the date once a second.
        self.date_tail = b"\r\n\r\n"
        self._emptied = asyncio.Event()

    def admit(self, connection: Member) -> bool:
        """Register a new connection, or refuse it when at the cap or shutting down."""
        count = len(self.connections)
        if self.closing or count >= self.settings.max_connections:
            return False
        self.connections.add(connection)
        if count >= self.peak_connections:
            self.peak_connections = count + 1
        return True

    def release(self, connection: Member) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._emptied.set()

    async def wait_empty(self) -> None:
        """Return once no connection is open."""
        while self.connections:
            self._emptied.clear()
            await self._emptied.wait()
