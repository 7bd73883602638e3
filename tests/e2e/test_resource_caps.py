"""Crowds a real ``tuco serve`` must survive: 10,000 silent TLS connections, 1,000 half-sent 1 MiB bodies.

RSS must stay within the bound the README states while they are held, and come
back to within 10 % of the baseline once they leave. The baseline is measured
after a smaller crowd of the same kind, so that one-time growth (allocator
arenas, OpenSSL's and the interpreter's caches) is part of it, and after the
server logged ``heap_trimmed`` (it hands freed memory back once a crowd left):
a leak per connection would still show against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from tests.e2e.process import TucoProcess
from tests.needs import unavailable

StartTuco = Callable[..., TucoProcess]

MIB = 1 << 20
CAP = 1024
"""TUCO_MAX_CONNECTIONS's default."""
BUDGET = 64 * MIB
"""TUCO_MAX_BUFFERED_BYTES's default."""
HANDSHAKE_BYTES = 64 * 1024
"""The README's bound on what a connection in its TLS handshake costs."""
SLACK = 32 * MIB
"""Buffers in flight beyond the stated costs (socket reads, lingering closes, interpreter noise)."""
REFUSE_WITHIN = 8.0
"""Connections over the cap must be closed well before the 10 s handshake time-out would close them anyway."""


@pytest.fixture(autouse=True)
def many_descriptors() -> Iterator[None]:
    """Room for 10,000 client sockets in this process (the server, its child, inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 12_000:
        unavailable(f"RLIMIT_NOFILE hard limit {hard} is below 12,000 (raise it: ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (16_384 if hard == resource.RLIM_INFINITY else min(hard, 16_384), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _wait_trimmed(server: TucoProcess, since: int) -> None:
    """Wait for a heap_trimmed line after the first ``since`` log lines with no connection left open."""
    deadline = time.monotonic() + 30
    while not any(
        event.get("event") == "heap_trimmed" and event["connections_open"] == 0 for event in server.events()[since:]
    ):
        assert time.monotonic() < deadline, f"no heap_trimmed with the crowd gone:\n{server.output()[-2000:]}"
        time.sleep(0.05)


def _silent_connections(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def _closed_by_server(socks: list[socket.socket], at_least: int, within: float, pid: int) -> tuple[int, int]:
    """Poll until ``at_least`` of ``socks`` were closed by the server; return (closed, peak RSS meanwhile)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed: set[int] = set()
    peak = _rss(pid)
    deadline = time.monotonic() + within
    while len(closed) < at_least and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            try:
                data = by_fd[fd].recv(4096)
            except ConnectionError:
                data = b""
            except BlockingIOError:
                continue
            if not data:
                closed.add(fd)
                poller.unregister(fd)
        peak = max(peak, _rss(pid))
    return len(closed), peak


def test_ten_thousand_silent_tls_connections_are_capped_and_memory_comes_back(tuco: StartTuco, tmp_path: Path) -> None:
    """Silent TLS connections over the cap are closed at accept; RSS stays bounded and returns within 10 %."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    server = tuco(TUCO_TLS_CERT_FILE=str(cert), TUCO_TLS_KEY_FILE=str(key))
    trust = ssl.create_default_context()
    ca.configure_trust(trust)

    def serves() -> bool:
        with httpx.Client(base_url=server.url, verify=trust, timeout=10) as http:
            return http.get("/healthz").status_code == 200

    assert serves()
    for round_, crowd in enumerate((CAP + 100, 10_000), start=1):
        if round_ == 2:
            baseline, baseline_fds = _rss(server.pid), _fds(server.pid)
        socks = _silent_connections(server.port, crowd)
        try:
            closed, peak = _closed_by_server(socks, crowd - CAP, REFUSE_WITHIN, server.pid)
            assert closed >= crowd - CAP, f"only {closed} of {crowd} silent TLS connections refused"
            assert _fds(server.pid) <= CAP + 32
        finally:
            since = len(server.events())
            for sock in socks:
                sock.close()
        _wait_trimmed(server, since)
    final = _rss(server.pid)
    report = f"baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, final {final / MIB:.1f} MiB"
    print(report)
    assert peak <= baseline + CAP * HANDSHAKE_BYTES + SLACK, report
    assert final <= baseline * 1.10, report
    assert serves()
    assert _fds(server.pid) <= baseline_fds + 1


BODY = memoryview(b"b" * (MIB - 1))


async def _half_sent_bodies(port: int, count: int, pid: int) -> tuple[list[socket.socket], int]:
    """``count`` clients announce 1 MiB and send all but its last byte: their sockets, and the server's peak RSS."""
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []
    peak = _rss(pid)

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, _rss(pid))
            await asyncio.sleep(0.05)

    async def one(index: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        socks.append(sock)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        head = b"PUT /v1/key/body%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (index, MIB)
        with contextlib.suppress(ConnectionError):  # a refused body is discarded, or the socket reset
            await loop.sock_sendall(sock, head)
            await loop.sock_sendall(sock, BODY)

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(one(index) for index in range(count)))
    sampler.cancel()
    return socks, max(peak, _rss(pid))


def _answers(socks: list[socket.socket], expected: int, within: float) -> dict[int, bytes]:
    """Read what the server said on each socket until ``expected`` have answered in full (or time is up)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    received: dict[int, bytes] = {}
    deadline = time.monotonic() + within
    while sum(answer.endswith(b"}") for answer in received.values()) < expected and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            try:
                data = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if data:
                received[fd] = received.get(fd, b"") + data
            else:
                poller.unregister(fd)
    return received


def _metric(port: int, name: str) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_a_thousand_half_sent_bodies_are_bounded_by_the_budget_and_memory_comes_back(tuco: StartTuco) -> None:
    """Bodies beyond TUCO_MAX_BUFFERED_BYTES get 503 server_busy at once; RSS stays bounded and returns within 10 %."""
    server = tuco()
    with server.client() as http:
        assert http.put("/v1/key/warm", content=bytes(MIB)).status_code == 201
    held = BUDGET // MIB
    for round_, crowd in enumerate((300, 1000), start=1):
        if round_ == 2:
            baseline = _rss(server.pid)
        socks, peak = asyncio.run(_half_sent_bodies(server.port, crowd, server.pid))
        try:
            answers = _answers(socks, crowd - held, 30)
            busy = [answer for answer in answers.values() if answer.startswith(b"HTTP/1.1 503 ")]
            assert len(busy) == crowd - held == len(answers), {answer[:40] for answer in answers.values()}
            head, _, body = busy[0].partition(b"\r\n\r\n")
            assert b"\r\nRetry-After: 1\r\n" in head
            assert json.loads(body)["error"] == "server_busy"
            assert _metric(server.port, "tuco_http_body_bytes_reserved") == held * MIB
        finally:
            since = len(server.events())
            for sock in socks:
                sock.close()
        _wait_trimmed(server, since)
    final = _rss(server.pid)
    report = f"baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB, final {final / MIB:.1f} MiB"
    print(report)
    assert peak <= baseline + BUDGET + SLACK, report
    assert final <= baseline * 1.10, report
    with server.client() as http:
        assert http.put("/v1/key/after", content=bytes(MIB)).status_code == 201
    assert _metric(server.port, "tuco_http_body_bytes_reserved") == 0
