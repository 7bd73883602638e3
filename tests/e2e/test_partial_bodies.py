"""A body is stored only once it has been received whole, on every front end, across stops and kills.

Raw sockets against real processes: a client announces a body, sends part of
it (or a chunked body without its last chunk) and goes away. Nothing of it may
be stored, not even over a key that already has a value. The loop then stops
the server (SIGTERM, or SIGKILL) and checks after the restart that every
acknowledged write is present with its exact value and no partial one is.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import UvicornProcess
from tests.e2e.process import TucoProcess

ROUNDS = 4
"""Each round writes, abandons bodies, then stops the server: SIGTERM on even rounds, SIGKILL on odd ones."""


class _Native:
    """``tuco serve`` that can be stopped, killed and started again on the same data."""

    def __init__(self, tmp_path: Path) -> None:
        self.process = TucoProcess({"TUCO_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)

    @property
    def port(self) -> int:
        return self.process.port

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        assert self.process.terminate() == 0

    def kill(self) -> None:
        self.process.kill()


class _Asgi:
    """``uvicorn tuco.asgi:app`` that can be stopped, killed and started again on the same data."""

    def __init__(self, tmp_path: Path) -> None:
        self.server = UvicornProcess(tmp_path / "data", tmp_path)
        self.server.stop()  # started by the test, like the native one

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        assert self.server.proc.returncode == -signal.SIGTERM  # uvicorn re-raises the signal after its shutdown

    def kill(self) -> None:
        self.server.kill()


Server = _Native | _Asgi


@pytest.fixture(params=["native", "asgi"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A stopped server of each front end; stopped for good afterwards."""
    made: Server = _Native(tmp_path) if request.param == "native" else _Asgi(tmp_path)
    yield made
    if isinstance(made, _Native):
        made.process.stop_quietly()
    elif made.server.proc.poll() is None:
        made.server.kill()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _response(sock: socket.socket) -> tuple[int, bytes]:
    """One Content-Length framed response: status and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        body += chunk
    return int(lines[0].split(" ", 2)[1]), body[:length]


def _put(port: int, key: str, value: bytes) -> int:
    with _connect(port) as sock:
        sock.sendall(
            b"PUT /v1/key/%b HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%b" % (key.encode(), len(value), value)
        )
        return _response(sock)[0]


def _get(port: int, key: str) -> tuple[int, bytes]:
    with _connect(port) as sock:
        sock.sendall(b"GET /v1/key/%b HTTP/1.1\r\nHost: t\r\n\r\n" % key.encode())
        return _response(sock)


def _abandon(sock: socket.socket, *, reset: bool) -> None:
    """Leave mid-body: a plain close (FIN), or a reset (RST) as a crashed client would."""
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _half_sized_body(port: int, key: str, *, reset: bool) -> None:
    """Announce 1,000 bytes, send 500, leave."""
    sock = _connect(port)
    sock.sendall(b"PUT /v1/key/%b HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n%b" % (key.encode(), b"p" * 500))
    _abandon(sock, reset=reset)


def _unfinished_chunked_body(port: int, key: str, *, reset: bool) -> None:
    """Send two chunks of a chunked body but never the last (zero-size) chunk, then leave."""
    sock = _connect(port)
    sock.sendall(
        b"PUT /v1/key/%b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n"
        % key.encode()
    )
    _abandon(sock, reset=reset)


def test_abandoned_bodies_are_never_stored_and_acknowledged_writes_survive(server: Server) -> None:
    """Half-sent and unterminated chunked bodies store nothing; every 201 survives SIGTERM and SIGKILL exactly."""
    acknowledged: dict[str, bytes] = {}
    abandoned: set[str] = set()
    server.start()
    for round_ in range(ROUNDS):
        for index in range(20):
            key, value = f"r{round_}-k{index}", os.urandom(64) + bytes([round_, index])
            assert _put(server.port, key, value) == 201
            acknowledged[key] = value
        for index in range(4):
            reset = index % 2 == 1
            _half_sized_body(server.port, f"r{round_}-half{index}", reset=reset)
            _unfinished_chunked_body(server.port, f"r{round_}-chunked{index}", reset=reset)
            abandoned |= {f"r{round_}-half{index}", f"r{round_}-chunked{index}"}
            # Over a key that has a value: the old value must stay.
            _half_sized_body(server.port, f"r{round_}-k{index}", reset=reset)
            _unfinished_chunked_body(server.port, f"r{round_}-k{index + 4}", reset=reset)
        assert _put(server.port, f"r{round_}-last", b"after the abandoned bodies") == 201
        acknowledged[f"r{round_}-last"] = b"after the abandoned bodies"
        for key in sorted(abandoned):
            assert _get(server.port, key) == (404, b'{"error": "no_such_key", "message": "no such key"}'), key
        if round_ % 2 == 0:
            server.stop()
        else:
            server.kill()
        server.start()
        for key, value in acknowledged.items():
            assert _get(server.port, key) == (200, value), key
        for key in sorted(abandoned):
            assert _get(server.port, key)[0] == 404, key
    server.stop()
