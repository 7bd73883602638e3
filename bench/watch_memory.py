"""Watchers that never read: RSS and PUT latency, ``.venv/bin/python bench/watch_memory.py``.

    .venv/bin/python bench/watch_memory.py                     # 1,000 watchers, 200 PUTs of 256 KiB (issue 22)
    .venv/bin/python bench/watch_memory.py --watchers 400 --writes 60

One fresh ``tuco serve`` (file log, ``TUCO_LOG_SYNC=everysec`` unless ``--sync always``), warmed up with
the writes once, then ``--rounds`` rounds (3) on it, each:

1. ``--writes`` sequential PUTs of ``--value-bytes`` to ``--keys`` keys with nobody watching: the PUT p99
   without watchers, and the baseline RSS after them (the history then holds what it will hold);
2. ``--watchers`` raw connections open ``GET /v1/watch`` (every key) with a 4 KiB receive buffer and
   never read a byte; once ``tuco_watchers`` says they are all open, the same writes again: the PUT p99
   with watchers and their ratio to the first, and the peak RSS (VmRSS sampled every 20 ms);
3. the watchers are closed (a reset, as a client that is killed), and after ``--settle`` seconds the RSS
   again, as a ratio to the baseline.

Both p99s of a round come from the same server, seconds apart: the ratio, not the milliseconds, is the
figure, and its median over the rounds is judged (a p99 of 200 writes is their third slowest: one pause of
a busy machine moves it). Issue 22 asks for at most 2x, RSS under the documented bound, and back within
10 % of the baseline 10 s after the watchers are gone. Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from _proc import cpu_seconds, status_kib
from _server import ServerProcess, free_port, tuco_command

_RCVBUF = 4096


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def _writes(client: httpx.Client, count: int, keys: int, value: bytes) -> list[float]:
    """Seconds each of ``count`` sequential PUTs took."""
    took = []
    for n in range(count):
        started = time.perf_counter()
        response = client.put(f"/v1/key/big%2F{n % keys}", content=value)
        took.append(time.perf_counter() - started)
        if response.status_code != 201:
            raise SystemExit(f"PUT answered {response.status_code}: {response.text}")
    return took


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def _open_watchers(port: int, count: int) -> list[socket.socket]:
    """``count`` watch streams whose clients read nothing (a small receive window, so the server's side fills)."""
    request = b"GET /v1/watch HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def _reset(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class _Sampler(threading.Thread):
    """The highest VmRSS of ``pid`` while it runs (every 20 ms)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            self.done.wait(0.02)


def _wait_for(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _round(server: ServerProcess, client: httpx.Client, args: argparse.Namespace, value: bytes) -> dict[str, Any]:
    """One round: the writes alone, then the same writes with the watchers, then the watchers reset."""
    url = server.url
    cpu = cpu_seconds(server.pid)
    alone = _writes(client, args.writes, args.keys, value)
    cpu_alone = cpu_seconds(server.pid) - cpu
    time.sleep(1.0)
    baseline = status_kib(server.pid, "VmRSS")
    sampler = _Sampler(server.pid)
    sampler.start()
    watchers = _open_watchers(server.port, args.watchers)
    _wait_for(lambda: _metric(url, "tuco_watchers") >= args.watchers, "the watchers to open")
    cpu = cpu_seconds(server.pid)
    watched = _writes(client, args.writes, args.keys, value)
    cpu_watched = cpu_seconds(server.pid) - cpu
    time.sleep(1.0)
    with_watchers = status_kib(server.pid, "VmRSS")
    sampler.done.set()
    sampler.join()
    still_open = int(_metric(url, "tuco_watchers"))
    _reset(watchers)
    _wait_for(lambda: _metric(url, "tuco_watchers") == 0, "the watchers to go")
    time.sleep(args.settle)
    after = status_kib(server.pid, "VmRSS")
    return {
        "put_p99_ms_alone": round(_p99(alone) * 1000, 2),
        "put_p99_ms_watched": round(_p99(watched) * 1000, 2),
        "p99_ratio": round(_p99(watched) / _p99(alone), 2),
        "server_cpu_ms_per_put": [
            round(cpu_alone * 1000 / args.writes, 2),
            round(cpu_watched * 1000 / args.writes, 2),
        ],
        "put_median_ms": [round(statistics.median(alone) * 1000, 2), round(statistics.median(watched) * 1000, 2)],
        "slowest_ms_watched": {n: round(t * 1000, 1) for t, n in sorted((t, n) for n, t in enumerate(watched))[-4:]},
        "rss_mib_baseline": round(baseline / 1024, 1),
        "rss_mib_peak": round(max(sampler.peak, with_watchers) / 1024, 1),
        "watchers_still_open_after_writes": still_open,
        f"rss_mib_{args.settle:g}s_after": round(after / 1024, 1),
        "rss_after_ratio": round(after / baseline, 3),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {
        "TUCO_PORT": str(port),
        "TUCO_LOG_SYNC": args.sync,
        "TUCO_WATCH_MAX_WATCHERS": str(max(args.watchers, 1)),
        "TUCO_MAX_CONNECTIONS": str(args.watchers + 64),
        "TUCO_LOG_LEVEL": "warning",
        **dict(item.split("=", 1) for item in args.env),
    }
    value = os.urandom(args.value_bytes)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="tuco-watch-memory-") as data:
        env["TUCO_DATA_DIR"] = str(Path(data))
        with ServerProcess("watch-memory", tuco_command(), env, port) as server:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=60) as client:
                _writes(client, args.writes, args.keys, value)  # warm-up: the history fills as it will again
                for _ in range(args.rounds):
                    rounds.append(_round(server, client, args, value))
                server.check_alive()
    result: dict[str, Any] = {
        "watchers": args.watchers,
        "writes": args.writes,
        "value_bytes": args.value_bytes,
        "sync": args.sync,
        "rounds": rounds,
        "p99_ratio": statistics.median(r["p99_ratio"] for r in rounds),
        "rss_mib_over_baseline_peak": max(r["rss_mib_peak"] - r["rss_mib_baseline"] for r in rounds),
        "rss_after_ratio": max(r["rss_after_ratio"] for r in rounds),
    }
    result["targets"] = {
        "p99 within 2x (median of the rounds)": result["p99_ratio"] <= 2.0,
        "rss back within 10 % (every round)": result["rss_after_ratio"] <= 1.10,
        f"peak rss under baseline + {args.bound_mib:g} MiB (every round)": result["rss_mib_over_baseline_peak"]
        <= args.bound_mib,
    }
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alone-then-watched writes on one server")
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--value-bytes", type=int, default=256 * 1024)
    parser.add_argument("--keys", type=int, default=4, help="the writes go round this many keys")
    parser.add_argument("--sync", choices=("always", "everysec"), default="everysec")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the watchers go to read RSS")
    parser.add_argument(
        "--bound-mib",
        type=float,
        default=72.0,
        help="the documented bound on watch memory: TUCO_WATCH_MAX_BUFFERED_BYTES (64 MiB) and the frame cache (8 MiB)",
    )
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
