"""Watch acceptance over real processes: 16 writers, 4 watchers (one reconnecting, one slow), the log as referee.

Each watcher's events must equal the log's events for its prefix after its
start revision, in order, with no gap and nothing twice: compared with
``tuco log dump`` on the file backend and with ``tuco_events`` across two
PostgreSQL replicas.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tests.fix_db import fetch
from tests.http.watching import SSE

StartTuco = Callable[..., TucoProcess]
LogEvent = tuple[int, str, str, bytes]  # revision, "put"/"delete", key, value

WRITERS = 16
PADDING = b"p" * 6000  # values big enough that a slow reader's stream outgrows the kernel's socket buffers


WRITES = 1600  # enough for the reconnect (after 100 of w2's) and to put the slow watcher twice past its bound of 600


class Quota:
    """Writes left to make, shared by every writer of a run: the load is a count, not a time a busy machine shrinks."""

    def __init__(self, writes: int) -> None:
        self.left = writes

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


async def write_for(url: str, quota: Quota, writers: int = WRITERS, tag: str = "") -> int:
    """``writers`` clients PUT (every fifth time DELETE) their own keys until ``quota`` is spent; the last revision."""
    last = 0

    async def writer(n: int) -> None:
        nonlocal last
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            i = 0
            while quota.take():
                key = f"w{n % 4}{tag}%2F{n}-{i % 7}"
                if i % 5 == 4:
                    response = await client.delete(f"/v1/key/{key}")
                    assert response.status_code == 200
                else:
                    response = await client.put(f"/v1/key/{key}", content=b"v%d-%d." % (n, i) + PADDING)
                    assert response.status_code == 201
                last = max(last, int(response.headers["x-tuco-revision"]))
                i += 1

    await asyncio.gather(*(writer(n) for n in range(writers)))
    return last


def frame_event(frame: Any) -> LogEvent:
    data = frame.json()
    value = base64.b64decode(data["value"]) if frame.event == "put" else b""
    assert int(frame.id) == data["revision"]
    return data["revision"], frame.event, data["key"], value


class Watcher:
    """One watch stream's record: where it started and every put/delete it received."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.start = -1
        self.events: list[LogEvent] = []
        self.full: list[dict[str, Any]] = []
        self.reconnects = 0
        self.cancel: dict[str, Any] | None = None

    def take(self, frame: Any) -> None:
        if frame.event in ("put", "delete"):
            self.events.append(frame_event(frame))
            self.full.append(frame.json())


async def follow(url: str, watcher: Watcher, until: Callable[[], int], *, reconnect_after: int = 0) -> None:
    """Read a watch until a frame covers revision ``until()``; reconnect once with Last-Event-ID if asked."""
    last: int | None = None
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            async with client.stream("GET", "/v1/watch", params={"prefix": watcher.prefix}, headers=headers) as r:
                assert r.status_code == 200
                sse = SSE(r)
                opening = await sse.frame()
                assert opening is not None and opening.retry == 1000
                match = re.fullmatch(r"watching after revision (\d+)", sse.comments[-1])
                assert match is not None
                if watcher.start < 0:
                    watcher.start = int(match.group(1))
                else:
                    assert int(match.group(1)) == last
                while True:
                    frame = await sse.frame(timeout=20)
                    assert frame is not None, "the stream ended early"
                    assert frame.event != "cancel", frame.data
                    watcher.take(frame)
                    last = int(frame.id) if frame.id is not None else last
                    target = until()
                    if target and last is not None and last >= target:
                        return
                    if reconnect_after and len(watcher.events) >= reconnect_after and watcher.reconnects == 0:
                        watcher.reconnects += 1
                        break  # drop the connection mid-stream; resume with Last-Event-ID


def dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """The body bytes in the complete chunks of ``raw``, and the rest."""
    body = b""
    while True:
        size_line, sep, rest = raw.partition(b"\r\n")
        if not sep:
            return body, raw
        size = int(size_line, 16)
        if len(rest) < size + 2:
            return body, raw
        body += rest[:size]
        raw = rest[size + 2 :]
        if size == 0:
            return body, raw


async def slow_follow(port: int, watcher: Watcher, done: asyncio.Event) -> None:
    """A watcher with a 4 KiB receive buffer that reads 512 bytes every 100 ms while the writers write, then drains."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET /v1/watch?prefix={watcher.prefix} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    raw = b""
    done_at = [time.monotonic()]
    while b"\r\n\r\n" not in raw:
        raw += await loop.sock_recv(sock, 4096)
    head, _, raw = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    text = b""
    ended = False
    try:
        while not ended and not (done.is_set() and time.monotonic() - done_at[0] > 20):
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 512 if not done.is_set() else 65536), 15)
            if not chunk:
                break
            body, raw = dechunk(raw + chunk)
            text += body
            ended = raw.startswith(b"0\r\n") or b"event: cancel" in text
            if not done.is_set():
                await asyncio.sleep(0.1)
                done_at[0] = time.monotonic()
    finally:
        sock.close()
    for block in text.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":"))
        if block.startswith(": watching after revision") or "\n: watching after revision" in block:
            watcher.start = int(block.rsplit(" ", 1)[1])
        if fields.get("event") in ("put", "delete"):
            data = json.loads(fields["data"])
            assert int(fields["id"]) == data["revision"]
            value = base64.b64decode(data["value"]) if fields["event"] == "put" else b""
            watcher.events.append((data["revision"], fields["event"], data["key"], value))
        if fields.get("event") == "cancel":
            watcher.cancel = json.loads(fields["data"])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def dumped_events(log_path: Path, revisions: dict[int, tuple[int, int]] | None = None) -> list[LogEvent]:
    """Every event of the file log, through ``tuco log dump`` (and each PUT's create_revision and version)."""
    out = subprocess.run(
        [sys.executable, "-m", "tuco", "log", "dump", str(log_path)], check=True, capture_output=True, text=True
    ).stdout
    events: list[LogEvent] = []
    for line in out.splitlines():
        sequence, kind, key, value, *more = line.split("\t")
        events.append((int(sequence), kind.lower(), ast.literal_eval(key), ast.literal_eval(value)))
        fields = dict(field.split("=", 1) for field in more)  # a PUT's create_revision and version; by, at, reason
        if revisions is not None and "create_revision" in fields:
            revisions[int(sequence)] = (int(fields["create_revision"]), int(fields["version"]))
    return events


def expected(log: list[LogEvent], prefix: str, start: int, upto: int) -> list[LogEvent]:
    return [e for e in log if start < e[0] <= upto and e[2].startswith(prefix)]


class FourWatchers:
    """Everything, one prefix, one reconnecting mid-way and one slow raw socket, on one server."""

    def __init__(self) -> None:
        self.everyone, self.prefix_w1 = Watcher(""), Watcher("w1")
        self.reconnecting, self.slow = Watcher("w2"), Watcher("")
        self.final = 0
        self.rss: list[int] = []

    def run(self, watched: TucoProcess, writer_urls: list[str], writes: int = WRITES) -> None:
        """Watch ``watched`` while WRITERS clients, spread over ``writer_urls``, make ``writes`` changes."""

        async def main() -> None:
            done = asyncio.Event()
            final = lambda: self.final  # noqa: E731 - read when each watcher decides it has everything
            watchers = [
                asyncio.ensure_future(follow(watched.url, self.everyone, final)),
                asyncio.ensure_future(follow(watched.url, self.prefix_w1, final)),
                asyncio.ensure_future(follow(watched.url, self.reconnecting, final, reconnect_after=100)),
                asyncio.ensure_future(slow_follow(watched.port, self.slow, done)),
            ]
            while min(w.start for w in (self.everyone, self.prefix_w1, self.reconnecting)) < 0:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)

            async def sample() -> None:
                while not done.is_set():
                    self.rss.append(rss_kib(watched.pid))
                    await asyncio.sleep(0.25)

            sampler = asyncio.ensure_future(sample())
            share = WRITERS // len(writer_urls)
            quota = Quota(writes)
            finals = await asyncio.gather(
                *(write_for(url, quota, share, tag=f"r{i}") for i, url in enumerate(writer_urls))
            )
            self.final = max(finals)
            done.set()
            await sampler
            _, pending = await asyncio.wait(watchers, timeout=30)
            assert not pending, [
                (w.prefix, w.start, len(w.events), w.events[-1][0] if w.events else None, w.cancel, self.final)
                for w in (self.everyone, self.prefix_w1, self.reconnecting, self.slow)
            ]

        asyncio.run(main())

    def check(self, log: list[LogEvent]) -> int:
        """Each watcher against the referee log; the slow one cut with a resume point; bounded RSS. The resume point."""
        assert log[-1][0] == self.final == WRITES
        for watcher in (self.everyone, self.prefix_w1, self.reconnecting):
            assert watcher.events == expected(log, watcher.prefix, watcher.start, self.final), watcher.prefix
        assert self.reconnecting.reconnects == 1
        assert len(self.everyone.events) == WRITES - self.everyone.start
        slow = self.slow
        assert slow.cancel is not None and slow.cancel["reason"] == "slow_consumer", (
            slow.start,
            len(slow.events),
            slow.events[-1][0] if slow.events else None,
            self.final,
        )
        resume = int(slow.cancel["resume_revision"])
        assert slow.start < resume <= self.final
        assert slow.events == expected(log, "", slow.start, resume - 1)
        peak = max(self.rss)
        assert peak < 400 * 1024, f"RSS peaked at {peak} KiB"
        return resume


@pytest.mark.slow
def test_four_watchers_see_exactly_the_log_while_sixteen_writers_write(tuco: StartTuco, tmp_path: Path) -> None:
    """All, prefix, reconnecting and slow watchers equal `tuco log dump`; the slow one is cut with a resume point."""
    server = tuco(TUCO_WATCH_MAX_LAG_EVENTS="600", TUCO_WATCH_HEARTBEAT_SECONDS="0.5", TUCO_LOG_SYNC="everysec")
    watch = FourWatchers()
    watch.run(server, [server.url])
    assert server.terminate() == 0
    revisions: dict[int, tuple[int, int]] = {}
    log = dumped_events(tmp_path / "data" / "tuco.log", revisions)
    resume = watch.check(log)
    # Matching events carry the revisions a read showed: check them against the dump's create_revision/version.
    puts = [item for item in watch.everyone.full if "value" in item]
    assert puts and all(item["mod_revision"] == item["revision"] for item in puts)
    assert [(i["create_revision"], i["version"]) for i in puts] == [revisions[i["revision"]] for i in puts]
    print(f"watch e2e: {watch.final} writes, peak RSS {max(watch.rss) // 1024} MiB, slow cut at {resume}")


@pytest.mark.slow
def test_a_restarted_server_answers_410_for_a_start_it_no_longer_retains_and_sigterm_ends_streams(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """After a restart only the replayed revision is in memory (file log): older starts get 410; SIGTERM is fast."""
    server = tuco()
    with server.client() as client:
        for n in range(5):
            assert client.put(f"/v1/key/k{n}", content=b"x").status_code == 201
    assert server.terminate() == 0
    server = tuco(TUCO_SHUTDOWN_GRACE_SECONDS="20")
    with server.client() as client:
        refused = client.get("/v1/watch", params={"start_revision": "3"})
        assert refused.status_code == 410
        assert refused.json() == {
            "error": "history_compacted",
            "message": "that revision is no longer retained; the oldest available is 5: ask for revision 5 or later "
            "(start_revision=5 for a watch), or read without a revision for the current state; more history is kept "
            "with a larger TUCO_HISTORY_MAX_BYTES",
            "oldest_revision": 5,
        }

    frames: list[list[Any]] = [[], [], []]

    async def main() -> float:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def watch(n: int) -> None:
                async with client.stream("GET", "/v1/watch", params={"start_revision": "6"}) as response:
                    sse = SSE(response)
                    while (frame := await sse.frame(timeout=30)) is not None:
                        frames[n].append(frame)

            tasks = [asyncio.ensure_future(watch(n)) for n in range(3)]
            await asyncio.sleep(0.5)
            await client.put("/v1/key/k9", content=b"y")
            await asyncio.sleep(0.3)
            started = time.monotonic()
            server.proc.terminate()  # type: ignore[union-attr]
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            return time.monotonic() - started

    took = asyncio.run(main())
    assert server.wait_exit(10) == 0
    print(f"watch e2e: SIGTERM with 3 open streams exited in {took:.2f} s")
    assert took < 3.0, took
    for received in frames:
        kinds = [(f.event, f.id) for f in received if f.retry is None and f.event != "progress"]
        assert kinds == [("put", "6"), ("cancel", "6")]
        assert received[-1].json() == {"reason": "shutting_down", "resume_revision": 7}


@pytest.mark.postgres
@pytest.mark.slow
def test_watchers_on_one_replica_see_the_writes_of_both(tuco: StartTuco, pg_dsn: str) -> None:
    """Writers on replicas A and B, the four watchers on B: each equals tuco_events; a new replica reads back from 1."""
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn, "TUCO_WATCH_HEARTBEAT_SECONDS": "0.5"}
    a = tuco(**env)
    b = tuco(**env, TUCO_WATCH_MAX_LAG_EVENTS="600")
    watch = FourWatchers()
    watch.run(b, [a.url, b.url])
    rows = asyncio.run(fetch(pg_dsn, "SELECT sequence, type, key, value FROM tuco_events ORDER BY sequence"))
    log = [(r[0], "put" if r[1] == 1 else "delete", r[2].decode(), bytes(r[3])) for r in rows]
    resume = watch.check(log)
    assert {e[2][2:4] for e in watch.everyone.events} == {"r0", "r1"}  # writes made through both replicas
    final = watch.final
    print(f"watch e2e on PostgreSQL: {final} writes, peak RSS {max(watch.rss) // 1024} MiB, slow cut at {resume}")
    # A replica started now holds only the current state in memory: a watch from 1 reads tuco_events back.
    c = tuco(**env)
    replayed = Watcher("")

    async def from_the_start() -> None:
        async with (
            httpx.AsyncClient(base_url=c.url, timeout=30) as client,
            client.stream("GET", "/v1/watch", params={"start_revision": "1"}) as response,
        ):
            assert response.status_code == 200
            sse = SSE(response)
            while (frame := await sse.frame(timeout=20)) is not None:
                replayed.take(frame)
                if frame.id is not None and int(frame.id) >= final:
                    return

    asyncio.run(from_the_start())
    assert replayed.events == log
    assert all("create_revision" not in item for item in replayed.full)  # the table does not keep them
