"""Where a PostgreSQL write's time goes: ``.venv/bin/python bench/pg_profile.py [--seconds 10] [--rounds 3]``.

run.py's pg_put scenario (64 connections of wrk PUTting 64-byte values over 10,000 keys into one tuco on a
fresh database), measured on both sides of the connection, so that a write's latency splits into what
each part spends:

- tuco: its CPU per write (``/proc``), and each batch's commit as it sees it: from the batch handed to the
  log to the database's reply (``tuco_log_commit_duration_seconds``, ``tuco_log_commit_batch_size``);
- the database: ``tuco_write_batch``'s own time per call (``pg_stat_user_functions``, with
  ``track_functions = 'pl'`` set on the benchmark database), the WAL it writes and the time its flushes take
  (``pg_stat_wal``, with ``track_wal_io_timing``), and the CPU of every PostgreSQL process of the machine
  (backends, WAL writer, checkpointer...), which is the database's whole cost of the load;
- the machine: how many of its cores the three (tuco, PostgreSQL, wrk) kept busy.

PostgreSQL's counters are cluster-wide: run it on a machine where nothing else writes to that server.
Needs PostgreSQL on 127.0.0.1:5432 with trust auth as a superuser, as run.py's pg_* scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _data import preload_http
from _scenarios import DATABASE_SERVER, _admin, _fresh_database, base_env
from _server import ServerProcess, free_port, tuco_command
from _wrk import run_round

_KEYS = 10_000
_VALUE_BYTES = 64
_CONNECTIONS = 64
_TICK = os.sysconf("SC_CLK_TCK")


def _postgres_cpu_seconds() -> float:
    """User and system CPU of every process named ``postgres`` on this machine, in seconds."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name, _, rest = stat.partition(") ")
        if not name.endswith("(postgres"):
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICK


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle and iowait since boot (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / _TICK


def _histogram(text: str, name: str) -> tuple[float, float]:
    """``(sum, count)`` of a Prometheus histogram in a /metrics page."""
    found = {
        kind: float(match.group(1))
        for kind in ("sum", "count")
        if (match := re.search(rf"^{name}_{kind} (\S+)$", text, re.MULTILINE))
    }
    return found["sum"], found["count"]


def _tuco_counters(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    commit_sum, batches = _histogram(text, "tuco_log_commit_duration_seconds")
    writes, _ = _histogram(text, "tuco_log_commit_batch_size")
    return {"commit_seconds": commit_sum, "batches": batches, "writes": writes}


async def _database_counters(database: str) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(f"{DATABASE_SERVER}/{database}", timeout=10)
    try:
        function = await conn.fetchrow(
            "SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(total_time), 0) AS total,"
            " coalesce(sum(self_time), 0) AS self FROM pg_stat_user_functions WHERE funcname = 'tuco_write_batch'"
        )
        wal = await conn.fetchrow(
            "SELECT wal_records, wal_bytes, wal_write, wal_sync, wal_write_time, wal_sync_time FROM pg_stat_wal"
        )
        commits = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database)
    finally:
        await conn.close()
    return {
        "function_calls": float(function["calls"]),
        "function_ms": float(function["total"]),
        "function_self_ms": float(function["self"]),
        "wal_records": float(wal["wal_records"]),
        "wal_bytes": float(wal["wal_bytes"]),
        "wal_writes": float(wal["wal_write"]),
        "wal_syncs": float(wal["wal_sync"]),
        "wal_write_ms": float(wal["wal_write_time"]),
        "wal_sync_ms": float(wal["wal_sync_time"]),
        "commits": float(commits),
    }


def _profile_round(server: ServerProcess, database: str, seconds: float) -> dict[str, float]:
    """One wrk round of PUTs with every counter read right before and after it."""
    tuco_before, db_before = _tuco_counters(server.url), asyncio.run(_database_counters(database))
    pg_cpu, busy, started = _postgres_cpu_seconds(), _machine_busy_seconds(), time.perf_counter()
    result = run_round(
        url=server.url,
        pid=server.pid,
        connections=_CONNECTIONS,
        seconds=seconds,
        keys=_KEYS,
        value_bytes=_VALUE_BYTES,
        put_percent=100,
    )
    pg_cpu, busy, wall = (
        _postgres_cpu_seconds() - pg_cpu,
        _machine_busy_seconds() - busy,
        time.perf_counter() - started,
    )
    time.sleep(1.5)  # backends report their statistics at most once a second
    tuco_after, db_after = _tuco_counters(server.url), asyncio.run(_database_counters(database))
    tuco = {key: tuco_after[key] - tuco_before[key] for key in tuco_after}
    db = {key: db_after[key] - db_before[key] for key in db_after}
    writes, batches = tuco["writes"], tuco["batches"]
    return {
        "req_s": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "writes_per_batch": writes / batches,
        "batches_s": batches / wall,
        "commit_ms": 1000 * tuco["commit_seconds"] / batches,
        "function_ms": db["function_ms"] / db["function_calls"],
        "function_self_ms": db["function_self_ms"] / db["function_calls"],
        "function_calls_per_batch": db["function_calls"] / batches,
        "wal_bytes_per_write": db["wal_bytes"] / writes,
        "wal_records_per_write": db["wal_records"] / writes,
        "wal_syncs_per_batch": db["wal_syncs"] / batches,
        "wal_sync_ms": db["wal_sync_ms"] / db["wal_syncs"] if db["wal_syncs"] else 0.0,
        "wal_write_ms": db["wal_write_ms"] / db["wal_writes"] if db["wal_writes"] else 0.0,
        "tuco_cpu_us": result.cpu_us_per_request,
        "pg_cpu_us": 1e6 * pg_cpu / writes,
        "cores_busy": busy / wall,
    }


_ROWS = [
    ("req_s", "PUTs a second", "{:,.0f}"),
    ("p50_ms", "p50 latency, ms", "{:.2f}"),
    ("p99_ms", "p99 latency, ms", "{:.2f}"),
    ("writes_per_batch", "writes per batch (one database round trip)", "{:.1f}"),
    ("batches_s", "batches a second", "{:,.0f}"),
    ("commit_ms", "a batch's commit as tuco sees it, ms", "{:.2f}"),
    ("function_ms", "tuco_write_batch's time in the database, ms a call", "{:.2f}"),
    ("function_self_ms", "  of which its own statements (not functions it calls), ms", "{:.2f}"),
    ("function_calls_per_batch", "calls of it per batch", "{:.2f}"),
    ("wal_syncs_per_batch", "WAL flushes per batch", "{:.2f}"),
    ("wal_sync_ms", "a WAL flush, ms", "{:.3f}"),
    ("wal_write_ms", "a WAL write, ms", "{:.3f}"),
    ("wal_bytes_per_write", "WAL bytes per write", "{:,.0f}"),
    ("wal_records_per_write", "WAL records per write", "{:.1f}"),
    ("tuco_cpu_us", "tuco's CPU per write, µs", "{:.1f}"),
    ("pg_cpu_us", "PostgreSQL's CPU per write (all its processes), µs", "{:.1f}"),
    ("cores_busy", "cores busy (tuco + PostgreSQL + wrk), of 2", "{:.2f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    database = f"tuco_pg_profile_{os.getpid()}"
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as workdir, _fresh_database(database) as env:
        for setting in ("track_functions = 'pl'", "track_wal_io_timing = on"):
            asyncio.run(_admin(f'ALTER DATABASE "{database}" SET {setting}'))
        data_dir = Path(workdir) / "data"
        data_dir.mkdir()
        port = free_port()
        with ServerProcess("pg_profile", tuco_command(), {**base_env(port, data_dir), **env}, port) as server:
            server.wait_ready()
            preload_http(server.url, _KEYS, _VALUE_BYTES)
            run_round(
                url=server.url,
                pid=server.pid,
                connections=_CONNECTIONS,
                seconds=2,
                keys=_KEYS,
                value_bytes=_VALUE_BYTES,
                put_percent=100,
            )  # warm-up
            for number in range(args.rounds):
                rounds.append(_profile_round(server, database, args.seconds))
                print(f"round {number + 1}: {rounds[-1]['req_s']:,.0f} PUT/s", file=sys.stderr)
            server.check_alive()
    print(
        f"pg_put profile: median of {args.rounds} rounds x {args.seconds:.0f} s, {_CONNECTIONS} connections, "
        f"{_VALUE_BYTES}-byte values over {_KEYS:,} keys\n"
    )
    print("| figure | median | rounds |\n|---|--:|---|")
    for key, label, form in _ROWS:
        values = [r[key] for r in rounds]
        print(f"| {label} | {form.format(statistics.median(values))} | {', '.join(form.format(v) for v in values)} |")


if __name__ == "__main__":
    main()
