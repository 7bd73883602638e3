"""What watchers that never read cost a real ``tuco serve``: one copy of each frame, bounded queues, memory given back.

The clients here are raw sockets with a 4 KiB receive buffer that read nothing
(or, for the one that reads, everything): the server's side of each connection
fills up, as with a client that hangs or crawls.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]
VALUE = os.urandom(256 * 1024)
FRAME_BYTES = len(VALUE) * 4 // 3 + 200  # base64 and the frame's JSON around it


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def metric(url: str, name: str) -> float:
    """One unlabelled sample of /metrics; fails if the server does not export it."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found is not None, f"{name} is not in /metrics"
    return float(found[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def open_watcher(opened: list[socket.socket], port: int, query: str = "") -> socket.socket:
    """A watch stream whose client will read nothing unless told (4 KiB receive buffer), kept in ``opened``."""
    sock = socket.socket()
    opened.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/watch{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


def reset(sock: socket.socket) -> None:
    """Close with a reset, as a killed client's socket goes."""
    if sock.fileno() != -1:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Where a test puts its raw client sockets: each is reset at the end, also when the test fails."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        reset(sock)


def put(client: httpx.Client, key: str, value: bytes = VALUE) -> int:
    response = client.put(f"/v1/key/{key}", content=value)
    assert response.status_code == 201, response.text
    return int(response.headers["x-tuco-revision"])


def read_until(sock: socket.socket, marker: bytes, timeout: float = 60.0) -> bytes:
    """Everything the stream sent up to and including ``marker`` (the client starts reading now)."""
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(1 << 20)
        assert chunk, f"the stream ended before {marker!r}"
        data += chunk
    return data


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
def test_watchers_that_never_read_share_one_copy_of_each_frame_and_give_memory_back(
    tuco: StartTuco, sockets: list[socket.socket]
) -> None:
    """300 stuck watchers of 20 writes of 256 KiB hold one copy of each frame, under the bound; RSS comes back."""
    server = tuco(TUCO_LOG_SYNC="everysec")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for n in range(140):  # 35 MiB replaced: the history is at its bound (32 MiB), as after the watched writes
            put(client, f"big{n % 2}")
        baseline = rss_kib(server.pid)
        watchers = [open_watcher(sockets, server.port) for _ in range(300)]
        wait_until(lambda: metric(server.url, "tuco_watchers") == 300, "the watchers to open")
        reader = open_watcher(sockets, server.port)
        for n in range(20):
            last = put(client, f"big{n % 2}")
        read_until(reader, b"id: %d\n" % last)  # the changes went out
        # Every stuck watcher holds its queue (256 KiB and a frame): 300 copies would be over 150 MiB.
        grown_mib = (rss_kib(server.pid) - baseline) / 1024
        assert grown_mib < 64 + 8, f"RSS grew {grown_mib:.0f} MiB with 300 stuck watchers"
        wait_until(lambda: metric(server.url, "tuco_watch_buffered_bytes") > 0, "the queues to be counted")
        assert metric(server.url, "tuco_watch_buffered_bytes") <= 8 << 20
        assert metric(server.url, "tuco_watchers_cut_off_total") == 0  # shared, they were never too much
        for sock in [*watchers, reader]:
            reset(sock)
        wait_until(lambda: metric(server.url, "tuco_watchers") == 0, "the watchers to go")
        wait_until(
            lambda: rss_kib(server.pid) <= baseline * 1.10,
            f"RSS to come back within 10 % of the baseline {baseline} KiB (now {rss_kib(server.pid)} KiB)",
        )
        assert metric(server.url, "tuco_watch_buffered_bytes") == 0


def test_a_watcher_that_stops_reading_waits_at_its_backlog_bound_and_gets_everything_when_it_reads(
    tuco: StartTuco, sockets: list[socket.socket]
) -> None:
    """Past TUCO_WATCH_MAX_BACKLOG_BYTES nothing more is queued for a stuck watcher; once it reads, all arrive."""
    server = tuco(TUCO_WATCH_MAX_BACKLOG_BYTES="65536")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        watcher = open_watcher(sockets, server.port, "?prefix=big")
        wait_until(lambda: metric(server.url, "tuco_watchers") == 1, "the watcher to open")
        revisions = [put(client, "big") for _ in range(10)]
        wait_until(lambda: metric(server.url, "tuco_watch_buffered_bytes") > 0, "the queue to be counted")
        held = metric(server.url, "tuco_watch_buffered_bytes")
        assert 0 < held <= 65536 + FRAME_BYTES
        data = read_until(watcher, b"id: %d\n" % revisions[-1])
        assert re.findall(rb"\nid: (\d+)\nevent: put\n", b"\n" + data) == [b"%d" % r for r in revisions]
        assert metric(server.url, "tuco_watchers") == 1  # waited for, never cut
        reset(watcher)


def _cut_clients(server: TucoProcess) -> list[str]:
    return [line["client"] for line in server.events() if line.get("event") == "stream_cut_off"]


def test_over_the_total_bound_the_watchers_stuck_longest_are_cut_off_and_a_reader_never(
    tuco: StartTuco, sockets: list[socket.socket]
) -> None:
    """Past TUCO_WATCH_MAX_BUFFERED_BYTES the longest-stuck watchers are dropped, oldest first; a reader gets it all."""
    server = tuco(TUCO_WATCH_MAX_BACKLOG_BYTES="65536", TUCO_WATCH_MAX_BUFFERED_BYTES=str(1 << 20))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        stuck = [open_watcher(sockets, server.port, f"?key=w{n}") for n in range(6)]
        reader = open_watcher(sockets, server.port, "?key=r")
        wait_until(lambda: metric(server.url, "tuco_watchers") == 7, "the watchers to open")

        def stuck_or_cut(count: int) -> Callable[[], bool]:
            return lambda: (
                metric(server.url, "tuco_watchers_stalled") + metric(server.url, "tuco_watchers_cut_off_total") == count
            )

        for n in range(6):  # each stuck watcher gets its own frame: nothing shared, each holds one
            put(client, f"w{n}")
            wait_until(stuck_or_cut(n + 1), f"watcher {n} to be stuck")
        assert metric(server.url, "tuco_watch_buffered_bytes") <= 1 << 20
        cut = _cut_clients(server)
        names = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in stuck]
        assert cut == names[: len(cut)], "cut off in the order they got stuck"
        assert len(cut) == metric(server.url, "tuco_watchers_cut_off_total") >= 3  # six frames of 350 KiB: three fit
        revisions = [put(client, "r") for _ in range(8)]
        data = read_until(reader, b"id: %d\n" % revisions[-1])
        assert re.findall(rb"\nid: (\d+)\nevent: put\n", b"\n" + data) == [b"%d" % r for r in revisions]
        assert f"127.0.0.1:{reader.getsockname()[1]}" not in _cut_clients(server)
        assert metric(server.url, "tuco_watch_buffered_bytes") <= 1 << 20
        for sock in [*stuck, reader]:
            reset(sock)
