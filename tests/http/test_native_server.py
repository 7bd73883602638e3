"""The native HTTP/1.1 server over real loopback sockets, with exact bytes on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
import trustme
import uvloop

from tuco.http._clock import ManualClock
from tuco.http.answers import value_too_large
from tuco.http.api import KeyValueAPI
from tuco.http.messages import Request, Response, StreamResponse
from tuco.http.server import NativeServer, ServerSettings, start_server
from tuco.service import Service
from tuco.testing import MemoryLog


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 from a fresh trustme CA, and a client context trusting it."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


LOOPS = pytest.mark.parametrize(
    "loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop], ids=["uvloop", "asyncio"]
)


async def advance(clock: ManualClock, seconds: float) -> None:
    """Move the server's clock forward, then let the loop run what that set off (closes, writes).

    Time-outs of 30 s are then tested in milliseconds, and exactly: a deadline
    not yet reached has not fired, however slow the machine.
    """
    clock.advance(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition`` holds (a condition, not a guess at how long things take)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def run(
    main: Callable[[], Coroutine[Any, Any, None]],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop,
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(asyncio.wait_for(main(), 10))


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    raw_head: bytes


class Client:
    """One raw connection; the test controls every byte sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls, server: NativeServer, receive_buffer: int | None = None, tls: ssl.SSLContext | None = None
    ) -> Client:
        host, port = server.addresses[0]
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, ssl=tls, server_hostname=host if tls else None)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, *, head: bool = False, timeout: float = 5.0) -> Reply:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if not head and status >= 200:
            body = await asyncio.wait_for(self.reader.readexactly(int(headers[b"content-length"])), timeout)
        return Reply(status, headers, body, raw)

    async def at_eof(self, timeout: float = 5.0) -> bool:
        """Whether the server closed the connection, with nothing more sent."""
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    async def silent_for(self, seconds: float) -> bool:
        """Whether nothing at all arrives for ``seconds``."""
        try:
            await asyncio.wait_for(self.reader.read(1), seconds)
        except TimeoutError:
            return True
        return False

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[Request], Response | StreamResponse | Awaitable[Response | StreamResponse]] | None = None,
    tls: ssl.SSLContext | None = None,
    clock: ManualClock | None = None,
    handshake_timeout: float = 10.0,
    **settings: Any,
) -> AsyncIterator[NativeServer]:
    """A native server on a free loopback port, over a fresh store unless a handler is given; on ``clock`` if given."""
    log = MemoryLog()
    service = Service(log)
    await service.start()
    api = KeyValueAPI(service)
    server = await start_server(
        handler or api.handle,
        host="127.0.0.1",
        port=0,
        ssl=tls,
        settings=ServerSettings(**settings),
        clock=clock,
        handshake_timeout=handshake_timeout,
    )
    try:
        yield server
    finally:
        await server.aclose(grace=1.0)
        await log.aclose()


class Scripted:
    """A handler with a slow path, a failing path and a call log, for what the key-value API cannot show."""

    def __init__(self, body_size: int = 0) -> None:
        self.release = asyncio.Event()
        self.calls: list[tuple[bytes, bytes]] = []
        self.body = b"x" * body_size

    def __call__(self, request: Request) -> Response | Awaitable[Response]:
        method = request.method
        target = request.path + (b"?" + request.query if request.query else b"")
        self.calls.append((method, target))
        if target == b"/slow":
            return self._slow(target)
        if target == b"/boom":
            raise RuntimeError("secret internal detail")
        if target == b"/boom-later":
            return self._boom()
        return Response(200, self.body or target, b"text/plain")

    async def _slow(self, target: bytes) -> Response:
        await self.release.wait()
        return Response(200, target, b"text/plain")

    async def _boom(self) -> Response:
        await asyncio.sleep(0)
        raise RuntimeError("secret internal detail")


def put(key: str, value: bytes, extra: bytes = b"") -> bytes:
    return b"PUT /v1/key/%b HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%b\r\n%b" % (
        key.encode(),
        len(value),
        extra,
        value,
    )


def get(key: str, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    return b"%b /v1/key/%b HTTP/1.1\r\nHost: t\r\n%b\r\n" % (method, key.encode(), extra)


@LOOPS
def test_keep_alive_serves_several_requests_on_one_connection(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """An HTTP/1.1 connection stays open for a PUT, a GET, a DELETE and a GET, each answered exactly."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(put("k", b"hello"))
            created = await client.reply()
            assert (created.status, created.body) == (201, b"")
            assert created.raw_head.startswith(b"HTTP/1.1 201 Created\r\n")
            await client.send(get("k"))
            value = await client.reply()
            assert (value.status, value.body, value.headers[b"content-type"]) == (
                200,
                b"hello",
                b"application/octet-stream",
            )
            assert b"connection" not in value.headers
            await client.send(get("k", b"DELETE"))
            assert (await client.reply()).status == 200
            await client.send(get("k"))
            missing = await client.reply()
            assert missing.status == 404
            assert json.loads(missing.body)["error"] == "no_such_key"
            assert server.connection_count == 1
            await client.aclose()

    run(main, loop_factory)


@LOOPS
def test_pipelined_put_then_get_in_one_packet_reads_the_write(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A PUT, a GET and a HEAD sent in one packet are answered in order, and the GET sees the PUT."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(put("k", b"v1") + get("k") + get("k", b"HEAD") + put("k", b"v2") + get("k"))
            assert (await client.reply()).status == 201
            assert (await client.reply()).body == b"v1"
            head = await client.reply(head=True)
            assert (head.status, head.headers[b"content-length"]) == (200, b"2")
            assert (await client.reply()).status == 201
            assert (await client.reply()).body == b"v2"
            await client.aclose()

    run(main, loop_factory)


def test_pipelined_answers_wait_for_a_slow_earlier_request() -> None:
    """A fast GET pipelined behind a slow one is handled at once but answered only after the slow one."""

    async def main() -> None:
        handler = Scripted()
        async with serving(handler) as server:
            client = await Client.connect(server)
            await client.send(b"GET /slow HTTP/1.1\r\n\r\nGET /fast HTTP/1.1\r\n\r\nGET /fast2 HTTP/1.1\r\n\r\n")
            await until(lambda: len(handler.calls) == 3)
            assert [target for _, target in handler.calls] == [b"/slow", b"/fast", b"/fast2"]
            assert await client.silent_for(0.1)  # the fast answers were made, and are held back
            handler.release.set()
            assert [(await client.reply()).body for _ in range(3)] == [b"/slow", b"/fast", b"/fast2"]
            await client.aclose()

    run(main)


def test_a_request_pipelined_behind_a_watch_is_never_executed_and_the_watch_says_close() -> None:
    """A PUT sent right after GET /v1/watch is dropped unread: the stream says Connection: close, nothing is stored."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"GET /v1/watch HTTP/1.1\r\nHost: t\r\n\r\n" + put("pipelined", b"lost"))
            head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
            other = await Client.connect(server)
            await other.send(put("seen", b"v"))  # committed after anything the watch's connection wrote
            assert (await other.reply()).status == 201
            await other.send(get("pipelined"))
            assert (await other.reply()).status == 404  # never executed
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"\r\nConnection: close\r\n" in head and b"\r\nTransfer-Encoding: chunked\r\n" in head
            stream = b""
            while b"event: put" not in stream:  # the watch goes on: the change made elsewhere arrives
                stream += await asyncio.wait_for(client.reader.read(65536), 5)
            assert b'"key":"seen"' in stream and b"pipelined" not in stream
            await client.send(put("later", b"also lost"))  # bytes sent during the stream are read and dropped
            client.writer.write_eof()  # the client goes: the stream ends
            assert await client.at_eof()
            await other.send(get("later"))
            assert (await other.reply()).status == 404
            await until(lambda: server.connection_count == 1)
            await other.aclose()
            await client.aclose()

    run(main)


def test_a_write_pipelined_behind_a_pending_read_waits_for_its_answer() -> None:
    """RFC 9112: pipelined requests run in parallel only if all are safe; a PUT after a slow GET waits for it."""

    async def main() -> None:
        handler = Scripted()
        async with serving(handler) as server:
            client = await Client.connect(server)
            await client.send(b"GET /slow HTTP/1.1\r\n\r\nPUT /w HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            await until(lambda: len(handler.calls) == 1)
            assert await client.silent_for(0.1)
            assert handler.calls == [(b"GET", b"/slow")]  # the PUT is held, not run
            handler.release.set()
            assert [(await client.reply()).body for _ in range(2)] == [b"/slow", b"/w"]
            assert handler.calls == [(b"GET", b"/slow"), (b"PUT", b"/w")]
            await client.aclose()

    run(main)


def test_pipelining_beyond_max_pipelined_is_held_back_then_answered() -> None:
    """Past max_pipelined pending answers the server stops handling requests, then answers all of them in order."""

    async def main() -> None:
        handler = Scripted()
        async with serving(handler, max_pipelined=4) as server:
            client = await Client.connect(server)
            await client.send(
                b"GET /slow HTTP/1.1\r\n\r\n" + b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(20))
            )
            await until(lambda: len(handler.calls) == 4)
            assert await client.silent_for(0.1)
            assert len(handler.calls) == 4
            handler.release.set()
            bodies = [(await client.reply()).body for _ in range(21)]
            assert bodies == [b"/slow"] + [b"/%d" % i for i in range(20)]
            await client.aclose()

    run(main)


@LOOPS
def test_chunked_put_then_get_returns_the_exact_bytes(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    """A chunked PUT split across packets stores exactly the decoded bytes."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"PUT /v1/key/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            await asyncio.sleep(0.02)
            await client.send(b"lo\r\n7\r\n, world\r\n0\r\n\r\n")
            assert (await client.reply()).status == 201
            await client.send(get("c"))
            assert (await client.reply()).body == b"hello, world"
            await client.aclose()

    run(main, loop_factory)


def test_expect_100_continue_gets_an_interim_response_before_the_body() -> None:
    """With Expect: 100-continue the server sends exactly 100 Continue, then 201 once the body arrives."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"PUT /v1/key/e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            await client.send(b"body")
            assert (await client.reply()).status == 201
            await client.aclose()

    run(main)


def test_expect_100_continue_over_the_limit_gets_413_without_100() -> None:
    """A declared length over the limit with Expect: 100-continue is refused with 413 and no 100, then closed."""

    async def main() -> None:
        async with serving(max_body_bytes=10) as server:
            client = await Client.connect(server)
            await client.send(
                b"PUT /v1/key/e HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
            )
            reply = await client.reply()
            assert reply.raw_head.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
            assert reply.body == value_too_large(10).body
            assert reply.headers[b"connection"] == b"close"
            assert await client.at_eof()
            await client.aclose()

    run(main)


def test_http_1_0_connection_closes_after_the_response() -> None:
    """An HTTP/1.0 request without keep-alive gets Connection: close and the server closes."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            reply = await client.reply()
            assert (reply.status, reply.headers[b"connection"]) == (200, b"close")
            assert await client.at_eof()
            await client.aclose()

    run(main)


def test_http_1_0_keep_alive_is_honoured() -> None:
    """An HTTP/1.0 request asking for keep-alive gets Connection: keep-alive and the connection stays open."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            for _ in range(2):
                await client.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                reply = await client.reply()
                assert (reply.status, reply.headers[b"connection"]) == (200, b"keep-alive")
            await client.aclose()

    run(main)


def test_connection_close_is_honoured_and_later_requests_ignored() -> None:
    """Connection: close gets Connection: close, then EOF; a request pipelined after it is not answered."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(get("k", extra=b"Connection: close\r\n") + get("k"))
            reply = await client.reply()
            assert (reply.status, reply.headers[b"connection"]) == (404, b"close")
            assert await client.at_eof()
            await client.aclose()

    run(main)


def test_head_has_the_content_length_of_get_and_no_body() -> None:
    """HEAD answers with GET's headers including Content-Length, and not one byte of body."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(put("h", b"0123456789"))
            assert (await client.reply()).status == 201
            await client.send(get("h", b"HEAD") + get("h"))
            head = await client.reply(head=True)
            assert (head.status, head.headers[b"content-length"]) == (200, b"10")
            following = await client.reply()  # would misparse if HEAD had leaked a body
            assert following.body == b"0123456789"
            await client.aclose()

    run(main)


def test_unknown_method_gets_405_with_allow() -> None:
    """A POST to a key is answered 405 Method Not Allowed with an Allow header."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"POST /v1/key/a HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            reply = await client.reply()
            assert reply.raw_head.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
            assert reply.headers[b"allow"] == b"GET, HEAD, PUT, DELETE"
            assert json.loads(reply.body)["error"] == "method_not_allowed"
            await client.aclose()

    run(main)


def test_declared_content_length_over_the_limit_gets_413_at_once() -> None:
    """A Content-Length over max_body_bytes is refused before any body is sent, and the connection closed."""

    async def main() -> None:
        async with serving() as server:
            client = await Client.connect(server)
            await client.send(b"PUT /v1/key/big HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
            reply = await client.reply()
            assert (reply.status, reply.body) == (413, value_too_large(1 << 20).body)
            assert await client.at_eof()
            await client.aclose()

    run(main)


def test_chunked_body_over_the_limit_gets_413_and_close() -> None:
    """A chunked body whose running total passes max_body_bytes is refused with 413 and the connection closed."""

    async def main() -> None:
        async with serving(max_body_bytes=1000) as server:
            client = await Client.connect(server)
            chunk = b"%x\r\n%b\r\n" % (400, b"a" * 400)
            await client.send(b"PUT /v1/key/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 3)
            reply = await client.reply()
            assert (reply.status, reply.body) == (413, value_too_large(1000).body)
            assert await client.at_eof()
            await client.aclose()

    run(main)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"PUT /v1/key/a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        (
            b"PUT /v1/key/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        (b"PUT /v1/key/a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"PUT /v1/key/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
        (b"\x00\x01\x02 garbage \xff\r\n\r\n", 400),
        (b"GET /v1/key/a HTTP/1.1\r\nX-Bad: a\x01b\r\n\r\n", 400),
        (b"GET /v1/key/a HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n", 400),
        (b"PUT /v1/key/a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GET /v1/key/a HTTP/1.1\r\nExpect: something-else\r\n\r\n", 417),
        (b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /v1/key/a HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(11)) + b"\r\n", 431),
        (b"GET /v1/key/a HTTP/1.1\r\nX-Big: " + b"v" * 1500 + b"\r\n\r\n", 431),
    ],
    ids=[
        "cl-then-te",
        "te-then-cl",
        "duplicate-content-length",
        "bad-chunk-size",
        "garbage",
        "control-char-in-header",
        "obsolete-line-folding",
        "unsupported-transfer-coding",
        "unknown-expectation",
        "target-too-long",
        "too-many-headers",
        "headers-too-large",
    ],
)
def test_malformed_or_oversized_requests_get_an_error_and_close(request_bytes: bytes, status: int) -> None:
    """Malformed, ambiguous or oversized requests get the right JSON error with Connection: close, then EOF."""

    async def main() -> None:
        async with serving(max_header_count=10, max_header_bytes=1024) as server:
            client = await Client.connect(server)
            await client.send(request_bytes)
            reply = await client.reply()
            assert reply.status == status
            assert reply.headers[b"connection"] == b"close"
            assert reply.headers[b"content-type"] == b"application/json"
            assert set(json.loads(reply.body)) == {"error", "message"}
            assert await client.at_eof()
            await client.aclose()

    run(main)


def test_a_header_trickled_over_many_packets_is_cut_off() -> None:
    """One endless header value sent in small pieces gets 431 instead of being buffered forever."""

    async def main() -> None:
        async with serving(max_header_bytes=1024) as server:
            client = await Client.connect(server)
            await client.send(b"GET / HTTP/1.1\r\nX-Endless: ")
            with contextlib.suppress(ConnectionError):
                for _ in range(40):
                    await client.send(b"v" * 100)
                    await asyncio.sleep(0.001)
            assert (await client.reply()).status == 431
            await client.aclose()

    run(main)


def test_a_silent_client_is_closed_after_the_keepalive_timeout() -> None:
    """A connection on which nothing is ever sent stays open until keepalive_timeout, then is closed silently."""

    async def main() -> None:
        clock = ManualClock()
        async with serving(keepalive_timeout=30, clock=clock) as server:
            client = await Client.connect(server)
            await until(lambda: server.connection_count == 1)
            await advance(clock, 29.5)
            assert server.connection_count == 1 and not client.reader.at_eof()
            await advance(clock, 1)
            assert await client.at_eof()
            await until(lambda: server.connection_count == 0)
            await client.aclose()

    run(main)


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout() -> None:
    """After a response, a connection idle for keepalive_timeout is closed."""

    async def main() -> None:
        clock = ManualClock()
        async with serving(keepalive_timeout=30, clock=clock) as server:
            client = await Client.connect(server)
            await client.send(get("k"))
            assert (await client.reply()).status == 404
            await advance(clock, 29.5)
            assert server.connection_count == 1 and not client.reader.at_eof()
            await advance(clock, 1)
            assert await client.at_eof()
            await client.aclose()

    run(main)


def test_a_stalled_partial_request_gets_408_after_the_request_timeout() -> None:
    """A request whose body stops arriving gets 408 after request_timeout, then the connection closes."""

    async def main() -> None:
        clock = ManualClock()
        async with serving(request_timeout=30, keepalive_timeout=300, clock=clock) as server:
            client = await Client.connect(server)
            await client.send(b"PUT /v1/key/s HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            await until(lambda: server.body_bytes_reserved == 10)  # the head is parsed: the deadline is set
            await advance(clock, 29.5)
            assert server.connection_count == 1 and await client.silent_for(0.01)
            await advance(clock, 1)
            reply = await client.reply()
            assert reply.status == 408
            assert json.loads(reply.body) == {
                "error": "request_timeout",
                "message": "the request was not received in time",
            }
            assert await client.at_eof()
            await client.aclose()

    run(main)


def test_the_keepalive_timeout_closes_an_idle_connection_on_the_real_clock() -> None:
    """End to end on the loop's own clock: an idle connection is closed once keepalive_timeout has passed."""

    async def main() -> None:
        async with serving(keepalive_timeout=0.2) as server:
            client = await Client.connect(server)
            await client.send(get("k"))
            assert (await client.reply()).status == 404
            assert await client.at_eof()
            await until(lambda: server.connection_count == 0)
            await client.aclose()

    run(main)


def test_connections_beyond_the_cap_get_503_and_are_closed() -> None:
    """With max_connections open, a new connection gets 503 and EOF while the others keep working."""

    async def main() -> None:
        async with serving(max_connections=2) as server:
            clients = [await Client.connect(server) for _ in range(2)]
            for client in clients:
                await client.send(get("k"))
                assert (await client.reply()).status == 404
            extra = await Client.connect(server)
            refused = await extra.reply()
            assert (refused.status, json.loads(refused.body)["error"]) == (503, "too_many_connections")
            assert await extra.at_eof()
            assert server.connection_count == 2
            await clients[0].send(get("k"))
            assert (await clients[0].reply()).status == 404
            for client in [*clients, extra]:
                await client.aclose()

    run(main)


def test_a_client_that_does_not_read_cannot_make_the_server_buffer_without_bound() -> None:
    """Pipelined GETs of 1 MiB from a client that never reads are handled only as fast as it reads."""

    async def main() -> None:
        handler = Scripted(body_size=1 << 20)
        async with serving(handler, write_high_water=256 * 1024) as server:
            client = await Client.connect(server, receive_buffer=64 * 1024)
            await client.send(b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(100)))
            # 100 MiB of answers were asked for; only what fits in the socket buffers plus the high-water mark is
            # made. Wait until the server stops making them (the count holds still over many loop turns).
            await until(lambda: len(handler.calls) > 0)
            while True:
                seen = len(handler.calls)
                for _ in range(50):
                    await asyncio.sleep(0)
                await asyncio.sleep(0.05)
                if len(handler.calls) == seen:
                    break
            assert len(handler.calls) <= 12
            for _ in range(100):
                assert len((await client.reply()).body) == 1 << 20
            assert len(handler.calls) == 100
            await client.aclose()

    run(main)


def test_aclose_finishes_in_flight_requests_and_closes_idle_connections() -> None:
    """aclose closes an idle connection at once and lets a slow request finish with Connection: close."""

    async def main() -> None:
        handler = Scripted()
        async with serving(handler) as server:
            idle = await Client.connect(server)
            await idle.send(b"GET /fast HTTP/1.1\r\n\r\n")
            assert (await idle.reply()).status == 200
            busy = await Client.connect(server)
            await busy.send(b"GET /slow HTTP/1.1\r\n\r\n")
            await until(lambda: (b"GET", b"/slow") in handler.calls)
            closing = asyncio.create_task(server.aclose(grace=5))
            assert await idle.at_eof(timeout=1)
            assert not closing.done()
            handler.release.set()
            reply = await busy.reply()
            assert (reply.status, reply.body, reply.headers[b"connection"]) == (200, b"/slow", b"close")
            assert await busy.at_eof()
            await asyncio.wait_for(closing, 2)
            assert server.connection_count == 0
            for client in (idle, busy):
                await client.aclose()

    run(main)


def test_aclose_drops_connections_still_busy_after_the_grace_period() -> None:
    """A request still unanswered when the grace period ends has its connection closed."""

    async def main() -> None:
        handler = Scripted()
        clock = ManualClock()
        async with serving(handler, clock=clock) as server:
            busy = await Client.connect(server)
            await busy.send(b"GET /slow HTTP/1.1\r\n\r\n")
            await until(lambda: (b"GET", b"/slow") in handler.calls)
            closing = asyncio.create_task(server.aclose(grace=30))
            await advance(clock, 0)  # aclose starts, and with it the grace period
            await advance(clock, 29.5)
            assert not closing.done() and server.connection_count == 1
            await advance(clock, 1)
            await asyncio.wait_for(closing, 5)
            assert server.connection_count == 0
            with contextlib.suppress(ConnectionError):
                assert await busy.at_eof()
            await busy.aclose()
            handler.release.set()

    run(main)


@pytest.mark.parametrize("target", [b"/boom", b"/boom-later"], ids=["raises", "awaitable-raises"])
def test_a_failing_handler_gets_500_json_and_a_logged_traceback(target: bytes) -> None:
    """A handler exception becomes a 500 JSON answer without the traceback, which goes to the log instead."""

    async def main() -> None:
        async with serving(Scripted()) as server:
            client = await Client.connect(server)
            with structlog.testing.capture_logs() as logs:
                await client.send(b"GET %b HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n" % target)
                reply = await client.reply()
                after = await client.reply()
            assert reply.status == 500
            assert json.loads(reply.body)["error"] == "internal_error"
            assert b"secret" not in reply.body
            assert b"Traceback" not in reply.body
            assert after.body == b"/after"  # the connection survives
            [entry] = [entry for entry in logs if entry["event"] == "handler_failed"]
            assert isinstance(entry["exc_info"], RuntimeError)
            await client.aclose()

    run(main)


@LOOPS
def test_tls_serves_keep_alive_requests_and_closes_on_request(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """Over TLS the server keeps the connection alive across requests and closes it after Connection: close."""
    server_context, client_context = tls_contexts()

    async def main() -> None:
        async with serving(tls=server_context) as server:
            client = await Client.connect(server, tls=client_context)
            await client.send(put("t", b"secret"))
            assert (await client.reply()).status == 201
            await client.send(get("t", extra=b"Connection: close\r\n"))
            reply = await client.reply()
            assert (reply.status, reply.body, reply.headers[b"connection"]) == (200, b"secret", b"close")
            assert await client.at_eof()
            await client.aclose()

    run(main, loop_factory)
