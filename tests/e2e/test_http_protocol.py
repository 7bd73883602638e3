"""HTTP/1.1 over raw sockets against both front ends: framing, keep-alive, limits and timeouts."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

Frontend = tuple[str, str]


def _connect(frontend: Frontend) -> socket.socket:
    parts = urlsplit(frontend[1])
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)
    return sock


def _read_response(sock: socket.socket, buffer: bytearray, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Read exactly one response (Content-Length framed) from ``sock``; leftovers stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {bytes(buffer)!r}")
        buffer += chunk
    head_bytes, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head or status in (100, 204, 304) else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        rest += chunk
    buffer[:] = rest[length:]
    return status, headers, rest[:length]


def _exchange(frontend: Frontend, raw: bytes, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    with _connect(frontend) as sock:
        sock.sendall(raw)
        return _read_response(sock, bytearray(), head=head)


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_keep_alive_serves_several_requests_on_one_connection(frontend: Frontend) -> None:
    """Three requests, one connection, three answers."""
    with _connect(frontend) as sock:
        buffer = bytearray()
        sock.sendall(b"PUT /v1/key/ka HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        assert _read_response(sock, buffer)[0] == 201
        sock.sendall(b"GET /v1/key/ka HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _read_response(sock, buffer)[::2] == (200, b"abc")
        sock.sendall(b"DELETE /v1/key/ka HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _read_response(sock, buffer)[0] == 200


def test_pipelined_requests_are_answered_in_order(frontend: Frontend) -> None:
    """PUT, GET, DELETE, GET sent in one packet come back in request order with the right results."""
    with _connect(frontend) as sock:
        sock.sendall(
            b"PUT /v1/key/pipe HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst"
            b"GET /v1/key/pipe HTTP/1.1\r\nHost: t\r\n\r\n"
            b"DELETE /v1/key/pipe HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /v1/key/pipe HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        buffer = bytearray()
        answers = [_read_response(sock, buffer) for _ in range(4)]
    assert [(status, body) for status, _, body in answers][:2] == [(201, b""), (200, b"first")]
    assert [status for status, _, _ in answers][2:] == [200, 404]


def test_chunked_request_body_is_stored_exactly(frontend: Frontend) -> None:
    """A chunked PUT stores the concatenated chunks, byte for byte."""
    status, _, _ = _exchange(
        frontend,
        b"PUT /v1/key/chunky HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n\x00\r\n6\r\n world\r\n0\r\n\r\n",
    )
    assert status == 201
    assert _exchange(frontend, b"GET /v1/key/chunky HTTP/1.1\r\nHost: t\r\n\r\n")[::2] == (200, b"hello\x00 world")


def test_expect_100_continue(frontend: Frontend) -> None:
    """The server says 100 Continue before the body, then 201."""
    with _connect(frontend) as sock:
        sock.sendall(b"PUT /v1/key/cont HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        buffer = bytearray()
        assert _read_response(sock, buffer)[0] == 100
        sock.sendall(b"body")
        assert _read_response(sock, buffer)[0] == 201


def test_http_10_gets_an_answer_and_a_close(frontend: Frontend) -> None:
    """An HTTP/1.0 request without keep-alive is answered and the connection closed."""
    with _connect(frontend) as sock:
        sock.sendall(b"PUT /v1/key/old HTTP/1.0\r\nContent-Length: 2\r\n\r\nv1")
        assert _read_response(sock, bytearray())[0] == 201
        assert _closed_by_server(sock, 5)


def test_connection_close_is_honoured(frontend: Frontend) -> None:
    """`Connection: close` gets its answer, then the server closes."""
    with _connect(frontend) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status, headers, _ = _read_response(sock, bytearray())
        assert status == 200 and headers.get("connection", "").lower() == "close"
        assert _closed_by_server(sock, 5)


def test_head_has_length_but_no_body(frontend: Frontend) -> None:
    """HEAD answers like GET, Content-Length included, without the body."""
    _exchange(frontend, b"PUT /v1/key/h HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\nheadful")
    with _connect(frontend) as sock:
        sock.sendall(b"HEAD /v1/key/h HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/key/h HTTP/1.1\r\nHost: t\r\n\r\n")
        buffer = bytearray()
        status, headers, body = _read_response(sock, buffer, head=True)
        assert (status, headers["content-length"], body) == (200, "7", b"")
        assert _read_response(sock, buffer)[::2] == (200, b"headful")


def test_unknown_method_gets_405_with_allow(frontend: Frontend) -> None:
    """PATCH on a key is 405 with the Allow header."""
    status, headers, body = _exchange(frontend, b"PATCH /v1/key/x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
    assert (status, headers["allow"]) == (405, "GET, HEAD, PUT, DELETE")
    assert body == b'{"error": "method_not_allowed", "message": "allowed methods: GET, HEAD, PUT, DELETE"}'


def test_oversized_content_length_is_413(frontend: Frontend) -> None:
    """A declared body over the 1 MiB limit is refused with 413 before it is sent."""
    with _connect(frontend) as sock:
        sock.sendall(b"PUT /v1/key/big HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n")
        status, _, body = _read_response(sock, bytearray())
    assert status == 413
    assert b'"value_too_large"' in body


def test_oversized_chunked_body_is_413(frontend: Frontend) -> None:
    """A chunked body that grows past the limit is refused with 413."""
    with _connect(frontend) as sock:
        sock.sendall(b"PUT /v1/key/big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        try:
            for _ in range(17):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = _read_response(sock, bytearray())
    assert status == 413
    assert b'"value_too_large"' in body


@pytest.mark.parametrize(
    "raw",
    [
        b"PUT /v1/key/s HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        b"PUT /v1/key/s HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"PUT /v1/key/s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["cl-and-te", "two-content-lengths", "bad-chunk-size", "garbage"],
)
def test_ambiguous_or_malformed_requests_get_400_and_close(frontend: Frontend, raw: bytes) -> None:
    """Smuggling-shaped framing is refused with 400 and the connection closed; nothing is stored."""
    with _connect(frontend) as sock:
        sock.sendall(raw)
        status, _, _ = _read_response(sock, bytearray())
        assert status == 400
        assert _closed_by_server(sock, 5)
    assert _exchange(frontend, b"GET /v1/key/s HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 404


# Time-outs for a client that is slow before its request is complete belong to the front end that reads
# the socket: tuco serve's own. Under an ASGI server they are the server's (uvicorn has none for a silent
# client or a stalled head, only --timeout-keep-alive between requests), so these run on the native one.
NATIVE = pytest.mark.parametrize(
    "frontend", ["native", pytest.param("native-postgres", marks=pytest.mark.postgres)], indirect=True
)


@NATIVE
def test_silent_client_is_disconnected(frontend: Frontend) -> None:
    """A client that connects and says nothing is closed after the (1 s, in these tests) timeout."""
    with _connect(frontend) as sock:
        started = time.monotonic()
        assert _closed_by_server(sock, 8)
        assert time.monotonic() - started >= 0.5


@NATIVE
def test_stalled_request_is_disconnected(frontend: Frontend) -> None:
    """A client that sends half a request and stalls does not hold the connection forever."""
    with _connect(frontend) as sock:
        sock.sendall(b"PUT /v1/key/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        assert _closed_by_server(sock, 8)
