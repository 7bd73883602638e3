"""A TCP proxy in front of PostgreSQL that a test can stop, cut and restart (reconnection tests).

It runs its own event loop in a thread, so it keeps working across the tests'
``asyncio.run`` calls. ``stop()`` closes the listening socket and every
connection (the database "goes away"); ``start()`` listens again on the same port.

It follows the frontend/backend protocol's message framing (the proxy's URL
asks for ``sslmode=disable`` so the stream is readable), which lets
``drop_reply_to`` lose exactly the server's answer to one statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["Proxy", "pg_proxy"]

# Startup-phase requests without a type byte, answered (SSL, GSS) by one unframed byte.
_SSL_REQUEST, _GSS_REQUEST, _CANCEL_REQUEST = 80877103, 80877104, 80877102


class _Frontend:
    """Splits the client's byte stream into protocol messages."""

    def __init__(self) -> None:
        self.buffer = b""
        self.started = False
        self.unframed_replies = 0  # SSL/GSS requests, each answered by a single byte

    def messages(self, data: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(type, body)`` for each complete message; startup messages have type ``b""``."""
        self.buffer += data
        while True:
            if not self.started:
                if len(self.buffer) < 8:
                    return
                length, code = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    return
                body, self.buffer = self.buffer[4:length], self.buffer[length:]
                if code in (_SSL_REQUEST, _GSS_REQUEST):
                    self.unframed_replies += 1
                elif code != _CANCEL_REQUEST:
                    self.started = True
                yield b"", body
                continue
            if len(self.buffer) < 5:
                return
            (length,) = struct.unpack("!i", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return
            kind, body = self.buffer[:1], self.buffer[5 : 1 + length]
            self.buffer = self.buffer[1 + length :]
            yield kind, body


class _Backend:
    """Splits the server's byte stream into message types."""

    def __init__(self, frontend: _Frontend) -> None:
        self.buffer = b""
        self.frontend = frontend

    def types(self, data: bytes) -> Iterator[bytes]:
        self.buffer += data
        while self.buffer:
            if self.frontend.unframed_replies:
                self.frontend.unframed_replies -= 1
                self.buffer = self.buffer[1:]
                continue
            if len(self.buffer) < 5:
                return
            (length,) = struct.unpack("!i", self.buffer[1:5])
            if len(self.buffer) < 1 + length:
                return
            kind, self.buffer = self.buffer[:1], self.buffer[1 + length :]
            yield kind


def _statement_text(kind: bytes, body: bytes) -> tuple[bytes, bytes] | None:
    """``(prepared statement name, SQL)`` of a Query or Parse message, else None."""
    if kind == b"Q":
        return b"", body.rstrip(b"\0")
    if kind == b"P":
        name, _, rest = body.partition(b"\0")
        return name, rest.partition(b"\0")[0]
    return None


class _Session:
    """One proxied connection: its parsers, its prepared statements, whether its next reply is swallowed."""

    def __init__(self) -> None:
        self.frontend = _Frontend()
        self.backend = _Backend(self.frontend)
        self.statements: dict[bytes, bytes] = {}  # prepared statement name -> SQL
        self.swallowing = False


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to the server of ``dsn``."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        user = f"{parts.username}@" if parts.username else ""
        query = "&".join(part for part in (parts.query, "sslmode=disable") if part)
        self.dsn = urlunsplit((parts.scheme, f"{user}127.0.0.1:{self.port}", parts.path, query, ""))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._marker: bytes | None = None
        self.replies_dropped = 0
        self.executed: list[str] = []  # the SQL of every statement run through the proxy, in order

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    def start(self) -> None:
        """Accept connections (again)."""
        self._call(self._start())

    def stop(self) -> None:
        """Stop accepting and drop every open connection."""
        self._call(self._stop())

    def cut(self) -> None:
        """Drop every open connection but keep accepting new ones."""
        self._call(self._cut())

    def drop_reply_to(self, marker: bytes) -> None:
        """Once: let the next execution of a statement starting with ``marker`` run, lose its reply, drop everything.

        The statement reaches the server, which runs (and, outside a transaction,
        commits) it; its whole reply up to ReadyForQuery is swallowed and then
        every connection is aborted: the client sees only a broken connection,
        the "unknown outcome" case. ``replies_dropped`` counts how often it fired.
        """
        self._marker = marker

    def close(self) -> None:
        """Stop and end the proxy's thread."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _marks(self, session: _Session, data: bytes) -> None:
        """Arm ``session`` when ``data`` completes the execution of the marked statement."""
        for kind, body in session.frontend.messages(data):
            statement = _statement_text(kind, body)
            if statement is not None:
                session.statements[statement[0]] = statement[1]
            if kind == b"Q":
                executed = body.rstrip(b"\0")
            elif kind == b"B":
                executed = session.statements.get(body.split(b"\0", 2)[1], b"")  # portal, then statement name
            else:
                continue
            self.executed.append(executed.decode(errors="replace"))
            if self._marker is not None and executed.lstrip().startswith(self._marker):
                self._marker, session.swallowing = None, True

    async def _pump_up(self, session: _Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                self._marks(session, data)
                writer.write(data)
                await writer.drain()

    async def _pump_down(self, session: _Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if session.swallowing:
                    if b"Z" in session.backend.types(data):  # ReadyForQuery: the statement is over
                        self.replies_dropped += 1
                        self._abort_all()
                        return
                    continue
                for _ in session.backend.types(data):
                    pass
                writer.write(data)
                await writer.drain()

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._cut()

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _cut(self) -> None:
        self._abort_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        session = _Session()
        self._writers.update((client_writer, server_writer))
        pumps = [
            asyncio.ensure_future(self._pump_up(session, client_reader, server_writer)),
            asyncio.ensure_future(self._pump_down(session, server_reader, client_writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            for writer in (client_writer, server_writer):
                writer.transport.abort()
                self._writers.discard(writer)


@pytest.fixture
def pg_proxy(pg_dsn: str) -> Iterator[Proxy]:
    """A started proxy to this test's database; ``pg_proxy.dsn`` goes through it."""
    proxy = Proxy(pg_dsn)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
