"""A TCP proxy in front of PostgreSQL that a test can stop, cut and restart (reconnection tests).

It runs its own event loop in a thread, so it keeps working across the tests'
``asyncio.run`` calls. ``stop()`` closes the listening socket and every
connection (the database "goes away"); ``start()`` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["Proxy", "pg_proxy"]


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to the server of ``dsn``."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        user = f"{parts.username}@" if parts.username else ""
        self.dsn = urlunsplit((parts.scheme, f"{user}127.0.0.1:{self.port}", parts.path, parts.query, ""))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._marker: bytes | None = None
        self._armed = False

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
        """Once: after a client sends ``marker``, swallow the server's reply and drop every connection.

        ``drop_reply_to(b"COMMIT")`` makes a commit succeed on the server while
        the client only sees its connection break: the "unknown outcome" case.
        """
        self._marker = marker

    def close(self) -> None:
        """Stop and end the proxy's thread."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if upstream and self._marker is not None and self._marker in data:
                    self._marker, self._armed = None, True
                elif not upstream and self._armed:
                    self._armed = False
                    self._abort_all()
                    return
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
        self._writers.update((client_writer, server_writer))
        pumps = [
            asyncio.ensure_future(self._pump(client_reader, server_writer, upstream=True)),
            asyncio.ensure_future(self._pump(server_reader, client_writer, upstream=False)),
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
