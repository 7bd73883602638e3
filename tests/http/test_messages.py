"""Request values, streamed responses on both front ends, and the route table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from tests.http.test_native_server import Client, run, serving
from tuco.http._wire import KEEP, dynamic_lines, serialise
from tuco.http.api import Answer, KeyValueAPI
from tuco.http.asgi import ASGIApp
from tuco.http.messages import Request, Response, StreamResponse
from tuco.http.routes import RESERVED, ROUTES, match
from tuco.service import Service
from tuco.testing import MemoryLog


def test_request_header_lookup_is_case_insensitive_and_keeps_the_pairs() -> None:
    """header() finds a header whatever its case, the first of repeated ones; the pairs stay as received."""
    request = Request(b"GET", b"/v1/key/k", b"", [(b"If-Match", b'"3"'), (b"if-match", b'"4"'), (b"X", b"y")])
    assert request.header(b"if-match") == b'"3"'
    assert request.header_count(b"if-match") == 2
    assert request.header(b"absent") is None
    assert request.headers[0] == (b"If-Match", b'"3"')


def test_query_is_parsed_on_first_use_and_percent_decoded() -> None:
    """param() decodes names and values (+ as space), takes the first of repeated ones, and misses as None."""
    request = Request.from_target(b"GET", b"/v1/keys?prefix=a%2Fb+c&limit=5&limit=6&flag")
    assert (request.path, request.query) == (b"/v1/keys", b"prefix=a%2Fb+c&limit=5&limit=6&flag")
    assert request.param(b"prefix") == b"a/b c"
    assert request.param(b"limit") == b"5"
    assert request.param(b"flag") == b""
    assert request.param(b"other") is None


def test_route_table_matches_fixed_paths_then_key_routes_then_the_alias() -> None:
    """Reserved names are their own routes; /v1/key/{name} reaches any key; the alias takes other segments."""
    assert match(b"/healthz")[0] is ROUTES[0]
    for name in RESERVED:
        route, segment = match(b"/v1/" + name.encode())
        assert (route.pattern if route else None, segment) == ("/v1/" + name, b"")
        key_route, key = match(b"/v1/key/" + name.encode())
        assert (key_route.pattern if key_route else None, key) == ("/v1/key/{key}", name.encode())
    alias, segment = match(b"/v1/other")
    assert (alias.pattern if alias else None, segment) == ("/v1/{key}", b"other")
    assert match(b"/v1/a/b") == (None, b"")
    assert match(b"/v1/key/a/b")[1] == b"a/b"  # the rest of the path is the key
    assert match(b"/elsewhere") == (None, b"")


async def _three_chunks() -> AsyncIterator[bytes]:
    for chunk in (b"one,", b"", b"two,", b"three"):
        await asyncio.sleep(0)
        yield chunk


def streaming_api(service: Service) -> KeyValueAPI:
    """The key-value API plus a test-only /stream route answered with a StreamResponse.

    Its ``handle`` is replaced, as the API itself chooses it once: a compiled class cannot be subclassed here.
    """
    api = KeyValueAPI(service)
    plain = api.handle

    def handle(request: Request) -> Answer:
        if request.path == b"/stream":
            return StreamResponse(200, _three_chunks(), b"text/plain", ((b"X-Test", b"1"),))
        return plain(request)

    api.handle = handle
    return api


def test_native_server_sends_a_stream_chunked_then_closes_without_answering_what_was_pipelined() -> None:
    """A StreamResponse goes out chunked (empty chunks skipped, then the last-chunk), the last answer: close."""

    async def main() -> None:
        log = MemoryLog()
        service = Service(log)
        await service.start()
        api = streaming_api(service)
        async with serving(api.handle) as server:
            client = await Client.connect(server)
            await client.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/key/none HTTP/1.1\r\nHost: t\r\n\r\n")
            head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Test: 1\r\n")
            assert b"Connection: close\r\nTransfer-Encoding: chunked\r\nDate: " in head
            assert b"Content-Length" not in head
            body = await asyncio.wait_for(client.reader.read(), 5)  # to the end: nothing follows the stream
            assert body == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
            await client.aclose()
        await service.aclose()

    run(main)


def test_a_stream_whose_client_leaves_is_closed() -> None:
    """When the client disconnects mid-stream the chunk generator is closed (its finally runs), not left waiting."""
    closed = asyncio.Event()
    forever = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await forever.wait()
            yield b"never"
        finally:
            closed.set()

    def handler(request: Request) -> StreamResponse:
        return StreamResponse(200, endless())

    async def main() -> None:
        async with serving(handler) as server:
            client = await Client.connect(server)
            await client.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.wait_for(client.reader.readuntil(b"5\r\nfirst\r\n"), 5)
            await client.aclose()
            await asyncio.wait_for(closed.wait(), 5)
            assert not forever.is_set()

    run(main)


def test_asgi_sends_a_stream_with_more_body() -> None:
    """Through ASGI the same StreamResponse arrives whole, with its headers and no Content-Length."""

    async def main() -> None:
        service = Service(MemoryLog())
        await service.start()
        app = ASGIApp(service, api=streaming_api(service))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tuco") as client:
            response = await client.get("/stream")
            assert (response.status_code, response.content) == (200, b"one,two,three")
            assert response.headers["x-test"] == "1"
            assert "content-length" not in response.headers
        await service.aclose()

    asyncio.run(main())


def test_a_responses_dynamic_fields_are_values_rendered_the_same_by_every_front_end() -> None:
    """ETag, revision and fields stay values: pairs for ASGI and serverless, the same lines on the native wire."""
    response = Response(200, b"", None, ((b"A", b"1"),), 7, 9, fields=((b"X-Tuco-Expires-At", b"1700"),))
    assert response.all_headers() == [
        (b"A", b"1"),
        (b"ETag", b'"7"'),
        (b"X-Tuco-Revision", b"9"),
        (b"X-Tuco-Expires-At", b"1700"),
    ]
    assert dynamic_lines(response) == b'ETag: "7"\r\nX-Tuco-Revision: 9\r\nX-Tuco-Expires-At: 1700\r\n'
    out: list[bytes] = []
    serialise(out, response, KEEP, False, b"X-Request-Id: r1\r\n", b"\r\n\r\n")
    assert out == [
        b"HTTP/1.1 200 OK\r\nA: 1\r\n"
        b'ETag: "7"\r\nX-Tuco-Revision: 9\r\nX-Tuco-Expires-At: 1700\r\nX-Request-Id: r1\r\n'
        b"Content-Length: 0\r\n\r\n"
    ]
    assert Response(404, b"", None, (), None, 3).all_headers() == [(b"X-Tuco-Revision", b"3")]
    assert dynamic_lines(Response(412, b"", None, (), 5)) == b'ETag: "5"\r\n'
    assert dynamic_lines(Response(200)) == b""


def test_the_one_format_answers_are_the_bytes_the_general_path_makes() -> None:
    """A key's read and a write's answer are rendered in one format each: byte for byte what the general path
    (dynamic lines, then Content-Length) renders for the same response, and for its HEAD, with a request id."""
    tail = b"\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n"
    read = Response(200, b"value", b"application/octet-stream", (), 7, 9, 3, 2)
    written = Response(201, b"", None, (), 9, 9)
    for response, status_line in ((read, b"HTTP/1.1 200 OK\r\n"), (written, b"HTTP/1.1 201 Created\r\n")):
        fast: list[bytes] = []
        serialise(fast, response, KEEP, False, b"", tail)
        lines = dynamic_lines(response)
        assert b"".join(fast).startswith(status_line)
        assert b"".join(fast).endswith(lines + b"Content-Length: %d" % len(response.body) + tail + response.body)
        general: list[bytes] = []  # a request id takes the general path
        serialise(general, response, KEEP, False, b"X-Request-Id: r\r\n", tail)
        assert b"".join(general) == b"".join(fast).replace(lines, lines + b"X-Request-Id: r\r\n")
        head_only: list[bytes] = []
        serialise(head_only, response, KEEP, True, b"", tail)
        assert b"".join(head_only) == b"".join(fast)[: len(b"".join(fast)) - len(response.body)]
    assert b"".join(fast) == b'HTTP/1.1 201 Created\r\nETag: "9"\r\nX-Tuco-Revision: 9\r\nContent-Length: 0' + tail
    fast = []
    serialise(fast, read, KEEP, False, b"", tail)
    assert b"".join(fast) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b'ETag: "7"\r\nX-Tuco-Revision: 9\r\nX-Tuco-Create-Revision: 3\r\nX-Tuco-Version: 2\r\nContent-Length: 5'
        + tail
        + b"value"
    )
