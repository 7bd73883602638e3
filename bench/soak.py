"""Soak tuco with awkward clients and watch for leaks: ``.venv/bin/python bench/soak.py``.

For ``--seconds`` (default 300) it runs, against one tuco on a fresh data dir:
connection churn (connect, one request, close; some closed mid-request with a
reset), idle clients that connect and say nothing, half-open clients that send
half a request header or half-close after a request. Meanwhile it samples the
server's open FDs, RSS, and (from ``GET /metrics``) its asyncio task count and
open HTTP connections. After every client has gone and a settling pause, the
last sample must be back at the baseline; a leak shows as FDs, tasks or
connections left over, or RSS that kept climbing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _data import key, preload_http
from _proc import open_fds, status_kib
from _server import ServerProcess, free_port, tuco_command

KEYS = 1000
VALUE = b"s" * 64
IO_TIMEOUT = 5.0


@dataclass
class Counters:
    """What the clients did, shown with each sample."""

    requests: int = 0
    resets: int = 0
    errors: int = 0
    idle_closed_by_server: int = 0
    half_open_closed_by_server: int = 0
    last_error: str = ""


@dataclass
class Sample:
    """One reading of the server."""

    at: float
    fds: int
    rss_kib: int
    tasks: float | None
    connections: float | None
    counters: dict[str, int] = field(default_factory=dict)


async def _metrics(port: int) -> dict[str, float]:
    """The unlabelled samples of ``GET /metrics``; empty if the endpoint is not there."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(-1), IO_TIMEOUT)
        writer.close()
    except (OSError, TimeoutError):
        return {}
    head, _, body = raw.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        return {}
    values = {}
    for line in body.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#"):
            try:
                values[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return values


async def _sample(server: ServerProcess, started: float, counters: Counters) -> Sample:
    metrics = await _metrics(server.port)
    return Sample(
        at=time.monotonic() - started,
        fds=open_fds(server.pid),
        rss_kib=status_kib(server.pid, "VmRSS"),
        tasks=metrics.get("tuco_asyncio_tasks"),
        connections=metrics.get("tuco_http_connections_open"),
        counters={k: v for k, v in vars(counters).items() if isinstance(v, int)},
    )


def _request(i: int, *, close: bool) -> bytes:
    connection = b"close" if close else b"keep-alive"
    path = f"/v1/key/{key(i % KEYS)}".encode()
    if i % 5 == 0:
        return b"PUT %s HTTP/1.1\r\nHost: soak\r\nConnection: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            path,
            connection,
            len(VALUE),
            VALUE,
        )
    return b"GET %s HTTP/1.1\r\nHost: soak\r\nConnection: %s\r\n\r\n" % (path, connection)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN, as a crashed client or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _churn(port: int, stop: asyncio.Event, counters: Counters, seed: int) -> None:
    """Connect, make one request, close; every tenth connection is reset mid-request."""
    rng = random.Random(seed)
    while not stop.is_set():
        i = rng.randrange(1_000_000)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
            request = _request(i, close=True)
            if i % 10 == 0:
                writer.write(request[: len(request) // 2])
                await writer.drain()
                _reset(writer)
                counters.resets += 1
                continue
            writer.write(request)
            response = await asyncio.wait_for(reader.read(-1), IO_TIMEOUT)
            writer.close()
            if not response.startswith((b"HTTP/1.1 2", b"HTTP/1.1 404")):
                raise RuntimeError(f"unexpected response {response[:40]!r}")
            counters.requests += 1
        except (OSError, TimeoutError, RuntimeError) as exc:
            counters.errors += 1
            counters.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.05)


async def _hold(port: int, stop: asyncio.Event, counters: Counters, payload: bytes, half_close: bool) -> None:
    """Keep one quiet connection open until ``stop``; count it if the server closes it first."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)
    except (OSError, TimeoutError):
        counters.errors += 1
        return
    try:
        if payload:
            writer.write(payload)
            if half_close:
                writer.write_eof()
        read = asyncio.ensure_future(reader.read(-1))
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({read, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if read in done and not half_close:
            if payload:
                counters.half_open_closed_by_server += 1
            else:
                counters.idle_closed_by_server += 1
        elif read in done:
            counters.requests += 1
        read.cancel()
        waiter.cancel()
    except OSError:
        counters.errors += 1
    finally:
        writer.close()


async def _quiet_clients(port: int, stop: asyncio.Event, counters: Counters, count: int, cycle: float) -> None:
    """Waves of idle, half-header and half-closed connections, renewed every ``cycle`` seconds."""
    half_header = b"GET /v1/key/" + key(1).encode() + b" HTTP/1.1\r\nHost: so"
    while not stop.is_set():
        wave = asyncio.Event()
        holders = []
        for n in range(count):
            kind = n % 3
            payload = b"" if kind == 0 else half_header if kind == 1 else _request(n, close=False)
            holders.append(asyncio.ensure_future(_hold(port, wave, counters, payload, half_close=kind == 2)))
        with_stop = asyncio.ensure_future(stop.wait())
        await asyncio.wait({with_stop}, timeout=cycle)
        with_stop.cancel()
        wave.set()
        await asyncio.gather(*holders)


def _print_sample(s: Sample) -> None:
    tasks = "n/a" if s.tasks is None else f"{s.tasks:.0f}"
    conns = "n/a" if s.connections is None else f"{s.connections:.0f}"
    c = s.counters
    print(
        f"{s.at:7.0f} s {s.fds:6d} {s.rss_kib / 1024:9.1f} {tasks:>6} {conns:>6} "
        f"{c['requests']:9d} {c['resets']:7d} {c['errors']:6d} "
        f"{c['idle_closed_by_server']:5d} {c['half_open_closed_by_server']:5d}",
        flush=True,
    )


def _verdict(baseline: Sample, loaded: list[Sample], final: Sample) -> tuple[bool, list[str]]:
    """Back to baseline once the clients are gone, and memory not climbing under load."""
    problems = []
    if final.fds > baseline.fds + 2:
        problems.append(f"open FDs {baseline.fds} -> {final.fds}")
    if baseline.tasks is not None and final.tasks is not None and final.tasks > baseline.tasks + 2:
        problems.append(f"asyncio tasks {baseline.tasks:.0f} -> {final.tasks:.0f}")
    if baseline.connections is not None and final.connections is not None and final.connections > baseline.connections:
        problems.append(f"open HTTP connections {baseline.connections:.0f} -> {final.connections:.0f}")
    if len(loaded) >= 4:
        # Judge memory on the second half only: the first half includes warm-up growth (caches, buffers).
        half = loaded[len(loaded) // 2 :]
        growth = half[-1].rss_kib - half[0].rss_kib
        rising = all(b.rss_kib >= a.rss_kib for a, b in itertools.pairwise(half))
        if growth > 8 * 1024 and rising:
            problems.append(f"RSS kept rising in the second half: +{growth / 1024:.1f} MiB")
    return not problems, problems


async def soak(seconds: float, every: float, churners: int, quiet: int, cycle: float) -> int:
    with tempfile.TemporaryDirectory(prefix="tuco-soak-") as tmp:
        port = free_port()
        env = {"TUCO_PORT": str(port), "TUCO_DATA_DIR": str(Path(tmp)), "TUCO_LOG_LEVEL": "warning"}
        with ServerProcess("soak", tuco_command(), env, port) as server:
            server.wait_ready()
            await asyncio.to_thread(preload_http, server.url, KEYS, len(VALUE))
            counters = Counters()
            started = time.monotonic()
            await asyncio.sleep(1)
            baseline = await _sample(server, started, counters)
            print(
                f"{'time':>9} {'fds':>6} {'RSS MiB':>9} {'tasks':>6} {'conns':>6} {'requests':>9} {'resets':>7}"
                f" {'errors':>6} {'idle✕':>5} {'half✕':>5}   (✕ = closed by the server)"
            )
            _print_sample(baseline)
            stop = asyncio.Event()
            clients = [asyncio.ensure_future(_churn(port, stop, counters, seed)) for seed in range(churners)]
            clients.append(asyncio.ensure_future(_quiet_clients(port, stop, counters, quiet, cycle)))
            loaded = []
            deadline = started + 1 + seconds
            while time.monotonic() < deadline:
                await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))
                server.check_alive()
                loaded.append(await _sample(server, started, counters))
                _print_sample(loaded[-1])
            stop.set()
            await asyncio.wait_for(asyncio.gather(*clients), 30)
            await asyncio.sleep(5)
            final = await _sample(server, started, counters)
            _print_sample(final)
            code = server.stop()
    if baseline.tasks is None:
        print("asyncio tasks / connections: unavailable (no GET /metrics with tuco_asyncio_tasks)")
    if counters.last_error:
        print(f"last client error: {counters.last_error}")
    ok, problems = _verdict(baseline, loaded, final)
    print("verdict: " + ("returned to baseline" if ok else "GROWING: " + "; ".join(problems)))
    print(f"server exit code on SIGTERM: {code}")
    return 0 if ok and code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description="Soak tuco with connection churn, idle and half-open clients.")
    parser.add_argument("--seconds", type=float, default=300, help="length of the loaded phase (default 300)")
    parser.add_argument("--sample-every", type=float, default=10, help="seconds between samples (default 10)")
    parser.add_argument("--churners", type=int, default=8, help="concurrent connect-request-close loops")
    parser.add_argument("--quiet", type=int, default=90, help="idle / half-header / half-closed connections per wave")
    parser.add_argument("--cycle", type=float, default=20, help="seconds each wave of quiet connections stays open")
    args = parser.parse_args()
    return asyncio.run(soak(args.seconds, args.sample_every, args.churners, args.quiet, args.cycle))


if __name__ == "__main__":
    sys.exit(main())
