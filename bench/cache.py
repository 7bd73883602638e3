"""Read-through replicas: start-up time, RSS, hit ratio and GET throughput under a Zipf workload.

    .venv/bin/python bench/cache.py                                  # 10,000 keys of 1 KiB, 64 MiB cache
    .venv/bin/python bench/cache.py --keys 1000000 --modes cache     # the 1 GB case (once, not in the suite)
    .venv/bin/python bench/cache.py --cache-bytes 1048576 --zipf 0.8 # a cache much smaller than the hot set

Each run makes a fresh database on the local PostgreSQL (trust auth, dropped at the end), loads
``--keys`` keys of ``--value-bytes`` straight into ``tuco_state`` with COPY (start-up reads that
table, not the history), then for each mode starts ``tuco serve`` on it and reports: seconds from
spawn to ready, the replay's own seconds and keys, RSS after start-up, and, under ``wrk`` with
``wrk/zipf.lua`` (GETs, key i asked with weight 1/(i+1)^s, each drawn independently), requests
per second, the cache's hit ratio after the warm-up (from ``tuco_cache_misses`` in /metrics) and
RSS (VmRSS, VmHWM) afterwards. A cache replica is started twice: the first start on a database
builds the partial index over expiring keys (once per database), the second is the usual one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

import asyncpg

from _proc import cpu_seconds, status_kib
from _server import ServerProcess, free_port, tuco_command
from _wrk import WRK_DIR, _parse_summary, ensure_wrk
from tuco.log._pg_schema import ensure_schema

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
_CHUNK = 20_000


async def _load(dsn: str, keys: int, value_bytes: int) -> float:
    """Create the schema and COPY ``keys`` rows into tuco_state; return the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await ensure_schema(conn)
        filler = b"v" * max(0, value_bytes - 12)
        for first in range(0, keys, _CHUNK):
            rows = [
                (f"key-{i:012d}".encode(), b"%012d" % i + filler, i + 1, i + 1, 1)
                for i in range(first, min(keys, first + _CHUNK))
            ]
            await conn.copy_records_to_table(
                "tuco_state", records=rows, columns=["key", "value", "sequence", "create_revision", "version"]
            )
        await conn.execute("UPDATE tuco_head SET sequence = $1 WHERE id = 1", keys)
        await conn.execute("ANALYZE tuco_state")
    finally:
        await conn.close()
    return time.perf_counter() - started


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def _wrk(url: str, pid: int, keys: int, zipf: float, seconds: float, connections: int) -> dict[str, Any]:
    argv = [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_DIR / "zipf.lua"),
        url,
        "--",
        str(keys),
        str(zipf),
    ]
    cpu_before = cpu_seconds(pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 300, check=True)
    cpu = cpu_seconds(pid) - cpu_before
    summary = _parse_summary(done.stdout)
    requests = int(summary["requests"])
    elapsed = summary["duration_us"] / 1e6
    return {
        "requests": requests,
        "rps": round(requests / elapsed, 1) if elapsed else 0.0,
        "p50_ms": summary["latency_us"]["p50"] / 1000,
        "p99_ms": summary["latency_us"]["p99"] / 1000,
        "errors": summary["errors"],
        "cpu_us_per_request": round(cpu * 1e6 / requests, 1) if requests else 0.0,
    }


def _run_mode(mode: str, dsn: str, args: argparse.Namespace, *, load: bool = True) -> dict[str, Any]:
    port = free_port()
    env = {
        "TUCO_PORT": str(port),
        "TUCO_LOG_BACKEND": "postgres",
        "TUCO_DATABASE_URL": dsn,
        "TUCO_STATE": mode,
        "TUCO_CACHE_MAX_BYTES": str(args.cache_bytes),
        "TUCO_DATA_DIR": "/nonexistent",
        "TUCO_LOG_LEVEL": "info",
    }
    with ServerProcess(f"cache-bench-{mode}", tuco_command(), env, port) as server:
        ready = server.wait_ready(timeout=args.start_timeout)
        deadline = time.monotonic() + 30  # /readyz turns 200 a moment before the replay_finished line is out
        while not any(e.get("event") == "ready" for e in server.log_events()) and time.monotonic() < deadline:
            time.sleep(0.01)
        replay = next((e for e in server.log_events() if e.get("event") == "replay_finished"), {})
        result: dict[str, Any] = {
            "mode": mode,
            "ready_seconds": round(ready, 3),
            "replay_seconds": replay.get("seconds"),
            "replayed_keys": replay.get("keys"),
            "rss_after_start_mib": round(status_kib(server.pid, "VmRSS") / 1024, 1),
        }
        if load and args.seconds > 0:
            _wrk(server.url, server.pid, args.keys, args.zipf, args.warmup, args.connections)  # warm the cache
            misses = _metric(server.url, "tuco_cache_misses")
            load = _wrk(server.url, server.pid, args.keys, args.zipf, args.seconds, args.connections)
            missed = _metric(server.url, "tuco_cache_misses") - misses
            result.update(load)
            if mode == "cache":
                result["hit_ratio"] = round(1 - missed / load["requests"], 4) if load["requests"] else None
                result["cache_bytes"] = _metric(server.url, "tuco_cache_bytes")
                result["cache_entries"] = _metric(server.url, "tuco_cache_entries")
            result["rss_after_load_mib"] = round(status_kib(server.pid, "VmRSS") / 1024, 1)
            result["peak_rss_mib"] = round(status_kib(server.pid, "VmHWM") / 1024, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--cache-bytes", type=int, default=64 << 20)
    parser.add_argument("--zipf", type=float, default=1.0, help="the exponent s (0: uniform)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured load (0: start-up figures only)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--modes", default="cache,full", help="comma-separated: cache, full")
    parser.add_argument("--start-timeout", type=float, default=900.0)
    args = parser.parse_args()
    name = f"tuco_bench_cache_{uuid.uuid4().hex[:8]}"
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + name

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        loaded = asyncio.run(_load(dsn, args.keys, args.value_bytes))
        print(f"loaded {args.keys} keys of {args.value_bytes} bytes in {loaded:.1f} s", file=sys.stderr)
        results = []
        for mode in (mode.strip() for mode in args.modes.split(",") if mode.strip()):
            if mode == "cache":  # the first cache replica on a database builds the expiring-keys index
                first = _run_mode(mode, dsn, args, load=False)
                first["mode"] = "cache (first start: builds the index)"
                results.append(first)
            results.append(_run_mode(mode, dsn, args))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    report = {
        "keys": args.keys,
        "value_bytes": args.value_bytes,
        "cache_bytes": args.cache_bytes,
        "zipf": args.zipf,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
