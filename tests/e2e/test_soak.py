"""A short soak of the real server under connection churn: tasks, descriptors and memory must come back.

The load is a mix of what clients do to a server in production: short
connections, keep-alive sessions, pipelined bursts, clients that send half a
request or nothing and go silent, clients that leave without reading the
answer, and a client that stops reading large answers. One leaked task or file
descriptor per connection, or a buffer that keeps something per request, shows
up as a difference from the baseline. The harness runs a longer version.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.e2e.process import TucoProcess

HOST = "127.0.0.1"
DURATION = 20.0
"""Seconds of load; the first and second halves are compared for memory growth."""
SETTLE_TIMEOUT = 30.0
"""The deadline (not an expectation) for the server to close everything and come back to its baseline after the
load; the settle is polled, so a fast server passes at once and a loaded 2-core machine has room."""
CLIENT_TIMEOUT = 15.0
"""No single client waits longer than this for the server, so a hung server fails instead of hanging the run;
generous, because the slowest answer (408 after 1 s) can take a while on a loaded machine."""
MIN_CONNECTIONS = 2000
"""Fewer connections than this and a leak of one task or descriptor per connection would be too faint."""

MIB = 1 << 20
SMALL_KEYS = 200
SMALL_VALUE = b"s" * 100
MEDIUM_KEYS = 64
MEDIUM_VALUE = b"m" * (16 * 1024)
LARGE_KEY = "large"
LARGE_VALUE = b"L" * (512 * 1024)
STORED_BYTES = SMALL_KEYS * (len(SMALL_VALUE) + 8) + MEDIUM_KEYS * (len(MEDIUM_VALUE) + 8) + len(LARGE_VALUE)
"""The most the store can hold: the workload only ever writes these keys."""
RSS_HALF_SLACK = 8 * MIB
"""How much more the second half's RSS peak may be than the first half's (allocator noise, not a trend)."""
RSS_TOTAL_SLACK = 64 * MIB
HISTORY_BYTES = 1 * MIB  # small, so retained history cannot hide a leak
"""How far beyond baseline plus stored data RSS may end (interpreter caches, allocator arenas)."""


@dataclass(frozen=True)
class Snapshot:
    """The server's resource use at one moment, seen through /proc and, if it answered, /metrics."""

    proc_fds: int
    rss: int
    tasks: int | None
    connections: int | None
    """Open client connections other than the scrape that measured them."""
    metrics_fds: int | None

    def counts(self) -> tuple[int | None, ...]:
        """Everything but RSS, which is never exactly the same twice."""
        return self.proc_fds, self.tasks, self.connections, self.metrics_fds

    def describe(self) -> str:
        scraped = (
            "/metrics unanswered"
            if self.tasks is None
            else f"tasks={self.tasks} connections={self.connections} fds(metrics)={self.metrics_fds}"
        )
        return f"{scraped} fds(/proc)={self.proc_fds} rss={self.rss / MIB:.1f} MiB"


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS line for pid {pid}")


def _proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _request(method: str, key: str, body: bytes = b"", *, close: bool = False) -> bytes:
    head = f"{method} /v1/key/{key} HTTP/1.1\r\nHost: soak\r\n"
    if close:
        head += "Connection: close\r\n"
    if method == "PUT":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode("ascii") + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One Content-Length framed response: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes; a reset counts as closed."""
    data = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            data += chunk
    return bytes(data)


@contextlib.asynccontextmanager
async def _connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _parse_metrics(body: bytes) -> dict[str, float]:
    """The Prometheus samples without labels, by name."""
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def _snapshot(process: TucoProcess) -> Snapshot:
    """Scrape /metrics, then read /proc while the scrape's connection is still open.

    Both descriptor counts then include the scrape's socket and nothing that is
    still closing, because the scrape saw no other connection. A server that
    cannot answer (out of descriptors, say) still gets its /proc numbers read.
    """
    try:
        async with _connection(process.port) as (reader, writer):
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n")
            status, body = await asyncio.wait_for(_read_response(reader), CLIENT_TIMEOUT)
            proc_fds, rss = _proc_fds(process.pid), _rss(process.pid)
    except (OSError, asyncio.IncompleteReadError):
        return Snapshot(_proc_fds(process.pid), _rss(process.pid), None, None, None)
    assert status == 200, f"/metrics answered {status}"
    samples = _parse_metrics(body)
    return Snapshot(
        proc_fds=proc_fds,
        rss=rss,
        tasks=int(samples["tuco_asyncio_tasks"]),
        connections=int(samples["tuco_http_connections_open"]) - 1,
        metrics_fds=int(samples["process_open_fds"]),
    )


async def _settled(process: TucoProcess, done: Callable[[Snapshot], bool]) -> Snapshot:
    """Poll until ``done`` holds for the server's state, or :data:`SETTLE_TIMEOUT` passes; return the last state."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        snapshot = await _snapshot(process)
        if done(snapshot) or time.monotonic() > deadline:
            return snapshot
        await asyncio.sleep(0.1)


class Load:
    """The concurrent client behaviours, each looping until the deadline and tallying what it saw."""

    def __init__(self, port: int, deadline: float) -> None:
        self.port = port
        self.deadline = deadline
        self.connections: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def _connect(self, behaviour: str, exchange: Callable[..., Awaitable[None]]) -> None:
        """One connection of ``behaviour``; a server that hangs, resets or cuts it short is tallied, not raised."""
        try:
            async with _connection(self.port) as (reader, writer):
                await exchange(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
            self.unexpected[f"{behaviour}: {type(exc).__name__}"] += 1
        else:
            self.connections[behaviour] += 1

    def _tally(self, behaviour: str, status: int, expected: set[int]) -> None:
        self.outcomes[f"{behaviour} {status}"] += 1
        if status not in expected:
            self.unexpected[f"{behaviour}: status {status}"] += 1

    def _random_request(self, rng: random.Random, *, close: bool = False) -> tuple[bytes, set[int]]:
        """A PUT (small or 16 KiB), a GET of a key that may not exist yet, or a GET of one that never does."""
        choice = rng.random()
        if choice < 0.3:
            return _request("PUT", f"s{rng.randrange(SMALL_KEYS)}", SMALL_VALUE, close=close), {201}
        if choice < 0.55:
            return _request("PUT", f"m{rng.randrange(MEDIUM_KEYS)}", MEDIUM_VALUE, close=close), {201}
        if choice < 0.85:
            key = f"s{rng.randrange(SMALL_KEYS)}" if choice < 0.7 else f"m{rng.randrange(MEDIUM_KEYS)}"
            return _request("GET", key, close=close), {200, 404}
        return _request("GET", f"missing{rng.randrange(1000)}", close=close), {404}

    async def churn(self, seed: int) -> None:
        """(a) Open, one request, read the answer, close."""
        rng = random.Random(seed)

        async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request, expected = self._random_request(rng, close=rng.random() < 0.5)
            writer.write(request)
            status, _ = await asyncio.wait_for(_read_response(reader), CLIENT_TIMEOUT)
            self._tally("churn", status, expected)

        while self.running():
            await self._connect("churn", exchange)

    async def keep_alive(self, seed: int) -> None:
        """(b) Several requests, one after the other, on one connection."""
        rng = random.Random(seed)

        async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for _ in range(rng.randint(3, 10)):
                request, expected = self._random_request(rng)
                writer.write(request)
                status, _ = await asyncio.wait_for(_read_response(reader), CLIENT_TIMEOUT)
                self._tally("keep-alive", status, expected)

        while self.running():
            await self._connect("keep-alive", exchange)

    async def _half_open(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"GET /v1/key/s1 HTTP/1.1\r\nHost: soak\r\nX-Silent: ")
        answer = await asyncio.wait_for(_read_to_eof(reader), CLIENT_TIMEOUT)
        self._tally("half-open", int(answer.split(b" ", 2)[1]) if answer else 0, {408})

    async def _idle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = await asyncio.wait_for(_read_to_eof(reader), CLIENT_TIMEOUT)
        if answer:
            self.unexpected[f"idle: answered {answer[:12]!r}"] += 1

    async def silent(self) -> None:
        """(c) and (d): batches of clients that send half a request head, or nothing, and wait to be closed."""
        while self.running():
            async with asyncio.TaskGroup() as group:
                for _ in range(5):
                    group.create_task(self._connect("half-open", self._half_open))
                    group.create_task(self._connect("idle", self._idle))
                group.create_task(asyncio.sleep(0.5))

    async def hit_and_run(self, seed: int) -> None:
        """(e) Send a request and close without reading the answer."""
        rng = random.Random(seed)

        async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(self._random_request(rng)[0])
            await writer.drain()

        while self.running():
            await self._connect("hit-and-run", exchange)
            await asyncio.sleep(0.005)

    async def pipelined(self, seed: int) -> None:
        """(f) Bursts of requests in one write, answers read afterwards in order."""
        rng = random.Random(seed)

        async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            burst = [self._random_request(rng) for _ in range(16)]
            writer.write(b"".join(request for request, _ in burst))
            for _, expected in burst:
                status, _ = await asyncio.wait_for(_read_response(reader), CLIENT_TIMEOUT)
                self._tally("pipelined", status, expected)

        while self.running():
            await self._connect("pipelined", exchange)
            await asyncio.sleep(0.05)

    async def stalled_reader(self, seed: int) -> None:
        """(g) Ask for 16 MiB of large values, read none of it, and leave, before or after the server gives up."""
        rng = random.Random(seed)
        request = _request("GET", LARGE_KEY) * 32

        async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(request)
            await asyncio.sleep(rng.choice((0.3, 1.5)))

        while self.running():
            await self._connect("stalled-reader", exchange)


async def _sample_rss(pid: int, start: float, deadline: float, samples: list[tuple[float, int]]) -> None:
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        samples.append((time.monotonic() - start, _rss(pid)))


async def _warm_up(port: int) -> None:
    """Touch every code path once so that lazily created state is part of the baseline."""
    async with _connection(port) as (reader, writer):
        writer.write(_request("PUT", LARGE_KEY, LARGE_VALUE))
        assert (await asyncio.wait_for(_read_response(reader), CLIENT_TIMEOUT))[0] == 201
        for index in range(MEDIUM_KEYS):
            writer.write(_request("PUT", f"m{index}", MEDIUM_VALUE))
            assert (await asyncio.wait_for(_read_response(reader), CLIENT_TIMEOUT))[0] == 201
        for request in (_request("GET", LARGE_KEY), _request("GET", "m0"), _request("GET", "missing")):
            writer.write(request)
            await asyncio.wait_for(_read_response(reader), CLIENT_TIMEOUT)
    await asyncio.sleep(1.0)


async def _soak(process: TucoProcess) -> None:
    await _warm_up(process.port)
    previous: list[Snapshot] = []

    def steady(snapshot: Snapshot) -> bool:
        same = bool(previous) and snapshot.counts() == previous[-1].counts() and snapshot.connections == 0
        previous.append(snapshot)
        return same

    baseline = await _settled(process, steady)
    assert baseline.connections == 0, f"no quiet baseline after warming up: {baseline.describe()}"

    start = time.monotonic()
    deadline = start + DURATION
    load = Load(process.port, deadline)
    rss_samples: list[tuple[float, int]] = []
    async with asyncio.TaskGroup() as group:
        for seed in range(6):
            group.create_task(load.churn(seed))
        for seed in range(2):
            group.create_task(load.keep_alive(100 + seed))
        group.create_task(load.silent())
        group.create_task(load.hit_and_run(200))
        group.create_task(load.pipelined(300))
        group.create_task(load.stalled_reader(400))
        group.create_task(_sample_rss(process.pid, start, deadline, rss_samples))

    final = await _settled(
        process,
        lambda now: (
            now.connections == 0
            and now.tasks == baseline.tasks
            and now.proc_fds == baseline.proc_fds
            and now.metrics_fds == baseline.metrics_fds
        ),
    )

    total = sum(load.connections.values())
    first_half = max(rss for at, rss in rss_samples if at <= DURATION / 2)
    second_half = max(rss for at, rss in rss_samples if at > DURATION / 2)
    report = (
        f"baseline: {baseline.describe()}\nfinal:    {final.describe()}\n"
        f"rss peak first half {first_half / MIB:.1f} MiB, second half {second_half / MIB:.1f} MiB, "
        f"stored data {STORED_BYTES / MIB:.1f} MiB\n"
        f"{total} connections {dict(load.connections)}; answers {dict(load.outcomes)}; "
        f"unexpected {dict(load.unexpected)}"
    )
    print(report)

    assert total >= MIN_CONNECTIONS, f"too little load to show a leak:\n{report}"
    assert final.proc_fds == baseline.proc_fds, f"open fds {baseline.proc_fds} -> {final.proc_fds}:\n{report}"
    assert final.tasks == baseline.tasks, f"asyncio tasks {baseline.tasks} -> {final.tasks}:\n{report}"
    assert final.connections == 0, f"connections still open after {SETTLE_TIMEOUT}s:\n{report}"
    assert final.metrics_fds == baseline.metrics_fds, (
        f"process_open_fds {baseline.metrics_fds} -> {final.metrics_fds}:\n{report}"
    )
    assert second_half <= first_half + RSS_HALF_SLACK, (
        f"RSS still growing: second-half peak exceeds first-half peak by "
        f"{(second_half - first_half) / MIB:.1f} MiB (allowed {RSS_HALF_SLACK / MIB:.0f}):\n{report}"
    )
    # The store keeps up to HISTORY_BYTES of recent changes (for pinned listings): bounded, so allowed.
    assert final.rss <= baseline.rss + STORED_BYTES + HISTORY_BYTES + RSS_TOTAL_SLACK, (
        f"RSS grew {(final.rss - baseline.rss) / MIB:.1f} MiB, more than stored data, "
        f"{HISTORY_BYTES / MIB:.0f} MiB of history and {RSS_TOTAL_SLACK / MIB:.0f} MiB:\n{report}"
    )
    assert not load.unexpected, f"clients saw unexpected answers or failures:\n{report}"


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
@pytest.mark.timeout(180)
def test_churn_leaves_no_task_fd_or_memory_behind(tuco: Callable[..., TucoProcess]) -> None:
    """After 20 s of churning, half-open, idle and stalled clients, tasks and fds are at baseline and RSS is flat."""
    process = tuco(
        TUCO_KEEPALIVE_TIMEOUT_SECONDS="0.5",
        TUCO_REQUEST_TIMEOUT_SECONDS="1",
        TUCO_HISTORY_MAX_BYTES=str(HISTORY_BYTES),
    )
    asyncio.run(_soak(process))
