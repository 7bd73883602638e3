"""The native server's shared caps: connections counted from accept (TLS handshakes too), and one body budget."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest

from tests.http.test_native_server import LOOPS, Client, Reply, advance, get, run, serving, tls_contexts
from tuco.http._clock import ManualClock
from tuco.http.server import NativeServer


async def _until(condition: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until ``condition`` holds, polling; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.01)


async def _silent(server: NativeServer) -> socket.socket:
    """A TCP connection that never says anything (so never starts a TLS handshake)."""
    host, port = server.addresses[0]
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return sock


async def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without sending a byte."""
    try:
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), 5) == b""
    except ConnectionResetError:
        return True


@LOOPS
def test_a_tls_handshake_not_done_within_the_handshake_timeout_is_closed(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A connection that never says its ClientHello is closed when handshake_timeout has passed, and not before."""
    server_context, _ = tls_contexts()

    async def main() -> None:
        clock = ManualClock()
        async with serving(tls=server_context, clock=clock, handshake_timeout=10) as server:
            silent = await _silent(server)
            await _until(lambda: server.connection_count == 1)
            await advance(clock, 9.5)
            assert server.connection_count == 1
            await advance(clock, 1)
            assert await _closed_by_server(silent)
            await _until(lambda: server.connection_count == 0)
            silent.close()

    run(main, loop_factory)


def test_the_handshake_timeout_closes_a_silent_tls_connection_on_the_real_clock() -> None:
    """End to end on the loop's own clock: a handshake that never starts is given up after handshake_timeout."""
    server_context, _ = tls_contexts()

    async def main() -> None:
        async with serving(tls=server_context, handshake_timeout=0.3) as server:
            silent = await _silent(server)
            assert await _closed_by_server(silent)
            await _until(lambda: server.connection_count == 0)
            silent.close()

    run(main)


@LOOPS
def test_tls_handshakes_in_progress_count_against_the_connection_cap(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """With the cap taken by silent TLS connections, the next one is closed at accept; leaving frees a place."""
    server_context, client_context = tls_contexts()

    async def main() -> None:
        async with serving(tls=server_context, max_connections=2) as server:
            silent = [await _silent(server), await _silent(server)]
            await _until(lambda: server.connection_count == 2)
            extra = await _silent(server)
            assert await _closed_by_server(extra)
            assert server.connection_count == 2
            silent.pop().close()
            await _until(lambda: server.connection_count == 1)
            client = await Client.connect(server, tls=client_context)
            await client.send(get("k"))
            assert (await client.reply()).status == 404
            assert server.connection_count == 2
            await client.aclose()
            for sock in [*silent, extra]:
                sock.close()
            await _until(lambda: server.connection_count == 0)

    run(main, loop_factory)


@LOOPS
def test_a_client_hello_sent_with_the_connect_is_not_lost(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A ClientHello already waiting when the connection is accepted reaches the TLS layer; the request is served."""
    server_context, client_context = tls_contexts()

    async def main() -> None:
        async with serving(tls=server_context) as server:
            loop = asyncio.get_running_loop()
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = client_context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
            with pytest.raises(ssl.SSLWantReadError):
                tls.do_handshake()
            hello = outgoing.read()
            with socket.socket() as sock:
                sock.setblocking(False)
                await loop.sock_connect(sock, server.addresses[0])
                await loop.sock_sendall(sock, hello)  # before the server has even accepted
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        await loop.sock_sendall(sock, outgoing.read())
                        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                        assert data, "the server closed the connection during the handshake"
                        incoming.write(data)
                tls.write(get("k", extra=b"Connection: close\r\n"))
                await loop.sock_sendall(sock, outgoing.read())
                answer = b""
                while not answer.endswith(b"}"):
                    try:
                        answer += tls.read()
                    except ssl.SSLWantReadError:
                        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                        assert data, f"closed after {answer!r}"
                        incoming.write(data)
                assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")

    run(main, loop_factory)


def _put_head(key: str, length: int) -> bytes:
    return b"PUT /v1/key/%b HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (key.encode(), length)


def _assert_busy(reply: Reply) -> None:
    assert reply.raw_head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert (reply.headers[b"retry-after"], reply.headers[b"connection"]) == (b"1", b"close")
    assert json.loads(reply.body) == {
        "error": "server_busy",
        "message": "the server is receiving too many request bodies at once; retry shortly",
    }


@LOOPS
def test_bodies_beyond_the_shared_budget_get_503_until_the_budget_is_free(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Declared and chunked bodies share one budget; over it is 503 server_busy, and a client leaving frees it."""

    async def main() -> None:
        async with serving(max_buffered_bytes=1000, max_body_bytes=1000) as server:
            holder = await Client.connect(server)
            await holder.send(_put_head("held", 600) + b"h" * 100)
            await _until(lambda: server.body_bytes_reserved == 600)  # all of the declared length
            refused = await Client.connect(server)
            await refused.send(_put_head("refused", 600))
            _assert_busy(await refused.reply())
            assert await refused.at_eof()
            fits = await Client.connect(server)
            await fits.send(_put_head("fits", 400) + b"f" * 400)
            assert (await fits.reply()).status == 201
            chunked = await Client.connect(server)
            chunk = b"%x\r\n%b\r\n" % (300, b"c" * 300)
            await chunked.send(b"PUT /v1/key/chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
            await _until(lambda: server.body_bytes_reserved == 900)
            await chunked.send(chunk)  # 600 + 300 fit; 300 more do not
            _assert_busy(await chunked.reply())
            assert server.body_bytes_reserved == 600
            await holder.aclose()

            async def full_body_fits() -> bool:
                client = await Client.connect(server)
                await client.send(_put_head("whole", 1000) + b"w" * 1000)
                status = (await client.reply()).status
                await client.aclose()
                return status == 201

            await _until(full_body_fits)
            assert server.body_bytes_reserved == 0
            for client in (refused, fits, chunked):
                await client.aclose()

    run(main, loop_factory)


@pytest.mark.parametrize("ending", ["complete", "timeout", "too-large", "malformed"])
def test_every_way_a_body_ends_gives_its_budget_back(ending: str) -> None:
    """Completed, timed-out, oversized and malformed bodies all release their share: a full-size body fits after."""

    async def main() -> None:
        async with serving(max_buffered_bytes=1000, max_body_bytes=1000, request_timeout=0.3) as server:
            client = await Client.connect(server)
            if ending == "complete":
                await client.send(_put_head("a", 1000) + b"a" * 1000)
                assert (await client.reply()).status == 201
            elif ending == "timeout":
                await client.send(_put_head("a", 1000) + b"a" * 10)
                assert (await client.reply()).status == 408
            elif ending == "too-large":
                chunk = b"%x\r\n%b\r\n" % (600, b"c" * 600)
                await client.send(b"PUT /v1/key/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2)
                assert (await client.reply()).status == 413
            else:
                await client.send(b"PUT /v1/key/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\nzz\r\n")
                assert (await client.reply()).status == 400
            assert server.body_bytes_reserved == 0
            second = await Client.connect(server)
            await second.send(_put_head("b", 1000) + b"b" * 1000)
            assert (await second.reply()).status == 201
            for each in (client, second):
                await each.aclose()

    run(main)
