"""The ASGI front end's messages, called as a server calls it: what it reads, what it sends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tuco.http.asgi import ASGIApp
from tuco.service import Limits, Service
from tuco.testing import MemoryLog

Message = MutableMapping[str, Any]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]], http_version: str = "1.1") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version,
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 40001),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"tuco"), *headers],
    }


class _Client:
    """The server's side of one request: the messages it hands over, and those the app sent."""

    def __init__(self, *incoming: Message) -> None:
        self.incoming = list(incoming)
        self.received = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.received += 1
        if self.incoming:
            return self.incoming.pop(0)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(dict(message))


def _with_service(test: Callable[[ASGIApp, Service], Awaitable[None]], limits: Limits | None = None) -> None:
    async def main() -> None:
        service = Service(MemoryLog(), limits or Limits())
        await service.start()
        try:
            await service.put("k", b"value")
            await test(ASGIApp(service), service)
        finally:
            await service.aclose()

    asyncio.run(main())


def test_a_get_without_a_body_is_answered_without_reading_the_request() -> None:
    """An HTTP/1.1 GET with neither Content-Length nor Transfer-Encoding has no body: receive is never called."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client()
        await app(_scope("GET", "/v1/key/k", []), client.receive, client.send)
        assert client.received == 0
        assert client.sent == [
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", b"5"),
                    (b"content-type", b"application/octet-stream"),
                    (b"etag", b'"1"'),
                    (b"x-tuco-revision", b"1"),
                    (b"x-tuco-create-revision", b"1"),  # every GET answer carries both (issue 24)
                    (b"x-tuco-version", b"1"),
                ],
            },
            {"type": "http.response.body", "body": b"value"},
        ]

    _with_service(test)


def test_a_head_sends_the_length_of_the_body_it_leaves_out() -> None:
    """HEAD of a key: the GET's headers, Content-Length included, and an empty body; nothing read."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client()
        await app(_scope("HEAD", "/v1/key/k", []), client.receive, client.send)
        assert client.received == 0
        assert client.sent[0]["headers"][0] == (b"content-length", b"5")
        assert client.sent[1] == {"type": "http.response.body", "body": b""}

    _with_service(test)


def test_a_get_that_declares_a_body_reads_it() -> None:
    """A GET with a Content-Length reads its body (one http.request message) before answering."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client({"type": "http.request", "body": b"abc", "more_body": False})
        await app(_scope("GET", "/v1/key/k", [(b"content-length", b"3")]), client.receive, client.send)
        assert client.received == 1
        assert [m.get("status") for m in client.sent] == [200, None]

    _with_service(test)


def test_a_chunked_get_reads_its_body() -> None:
    """A GET with Transfer-Encoding (whatever its case) reads its body before answering."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client({"type": "http.request", "body": b"abc", "more_body": False})
        await app(_scope("GET", "/v1/key/k", [(b"Transfer-Encoding", b"chunked")]), client.receive, client.send)
        assert client.received == 1
        assert client.sent[0]["status"] == 200

    _with_service(test)


def test_an_http2_get_without_a_length_reads_its_body() -> None:
    """Over HTTP/2 a body needs no Content-Length, so a GET without one still reads the request."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client({"type": "http.request", "body": b"", "more_body": False})
        await app(_scope("GET", "/v1/key/k", [], http_version="2"), client.receive, client.send)
        assert client.received == 1
        assert client.sent[0]["status"] == 200

    _with_service(test)


def test_a_put_whose_client_left_before_its_body_came_stores_nothing() -> None:
    """A PUT without a body whose client disconnected is not stored and gets no answer."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client({"type": "http.disconnect"})
        await app(_scope("PUT", "/v1/key/gone", []), client.receive, client.send)
        assert (client.received, client.sent) == (1, [])
        assert "gone" not in service.store

    _with_service(test)


def test_a_put_whose_client_left_mid_body_stores_nothing() -> None:
    """A PUT whose client disconnected after part of its declared body is not stored and gets no answer."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"})
        await app(_scope("PUT", "/v1/key/gone", [(b"content-length", b"5")]), client.receive, client.send)
        assert (client.received, client.sent) == (2, [])
        assert "gone" not in service.store
        assert app.body_bytes_reserved == 0

    _with_service(test)


def test_a_put_is_stored_and_answered_201() -> None:
    """A PUT's body, in two messages, is stored whole; the answer is 201 with the new revision's ETag."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client(
            {"type": "http.request", "body": b"new", "more_body": True},
            {"type": "http.request", "body": b" value", "more_body": False},
        )
        await app(_scope("PUT", "/v1/key/k2", [(b"content-length", b"9")]), client.receive, client.send)
        assert service.store.get("k2") == b"new value"
        assert client.sent[0]["status"] == 201
        assert (b"etag", b'"2"') in client.sent[0]["headers"]

    _with_service(test)


def test_static_headers_are_sent_with_lower_case_names() -> None:
    """A canned answer's own headers (Retry-After on 503 server_busy) go out with lower-case names, after the type."""

    async def test(app: ASGIApp, service: Service) -> None:
        client = _Client()
        await app(_scope("PUT", "/v1/key/big", [(b"content-length", b"200")]), client.receive, client.send)
        start = client.sent[0]
        assert start["status"] == 503
        assert start["headers"][1:] == [(b"content-type", b"application/json"), (b"retry-after", b"1")]

    _with_service(test, Limits(max_value_bytes=1000, max_buffered_bytes=100))
