"""How tuco uses more than one core today: replicas on one PostgreSQL log, one per core.

``.venv/bin/python bench/replicas.py [--seconds 10] [--rounds 3] [--put-percent 0,10,100]``

For each mix, one round with one replica and one with two, interleaved, on one fresh database: each replica
gets its own wrk (32 connections each with two, 64 with one: the same 64 clients in all), and the figure is
the sum of the replicas' requests per second. The servers, the wrk processes and PostgreSQL share this
machine's cores, as they would share a host; the figures say what a second replica buys here, not on a
machine with a core for each. Needs PostgreSQL on 127.0.0.1:5432 with trust auth, as run.py's pg_* scenarios.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _data import preload_http
from _scenarios import _fresh_database, base_env
from _server import ServerProcess, free_port, tuco_command
from _wrk import RoundResult, run_round

_KEYS = 10_000
_VALUE_BYTES = 64
_CLIENTS = 64


def _round(servers: list[ServerProcess], seconds: float, put_percent: int) -> tuple[float, float]:
    """Run one wrk per server at once; the summed requests per second and the worst p99 (ms)."""
    results: list[RoundResult] = []
    lock = threading.Lock()

    def drive(server: ServerProcess) -> None:
        result = run_round(
            url=server.url,
            pid=server.pid,
            connections=_CLIENTS // len(servers),
            seconds=seconds,
            keys=_KEYS,
            value_bytes=_VALUE_BYTES,
            put_percent=put_percent,
        )
        with lock:
            results.append(result)

    threads = [threading.Thread(target=drive, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(r.rps for r in results), max(r.p99_ms for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description="One PostgreSQL replica against two, on this machine.")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--put-percent", default="0,10,100", help="comma-separated PUT shares to measure")
    args = parser.parse_args()
    mixes = [int(p) for p in args.put_percent.split(",")]
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tuco-bench-replicas-")))
        database = stack.enter_context(_fresh_database(f"tuco_bench_replicas_{int(time.time())}"))
        servers = []
        for index in range(2):
            port = free_port()
            data_dir = workdir / f"replica{index}"
            data_dir.mkdir()
            env = {**base_env(port, data_dir), **database}
            server = stack.enter_context(ServerProcess(f"replica{index}", tuco_command(), env, port))
            server.wait_ready(timeout=60)
            servers.append(server)
        preload_http(servers[0].url, _KEYS, _VALUE_BYTES)
        time.sleep(2)  # the second replica follows the preload
        print(f"{'mix':>10} | {'1 replica req/s':>16} | {'2 replicas req/s':>17} | ratio | p99 ms 1 / 2")
        for put_percent in mixes:
            one, two = [], []
            for _ in range(args.rounds):
                one.append(_round(servers[:1], args.seconds, put_percent))
                two.append(_round(servers, args.seconds, put_percent))
            rps1, rps2 = statistics.median(r[0] for r in one), statistics.median(r[0] for r in two)
            p99_1, p99_2 = statistics.median(r[1] for r in one), statistics.median(r[1] for r in two)
            print(
                f"{put_percent:>8} % | {rps1:>16,.0f} | {rps2:>17,.0f} | {rps2 / rps1:.2f}x "
                f"| {p99_1:.1f} / {p99_2:.1f}",
                flush=True,
            )
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
