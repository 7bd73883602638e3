"""Start-up of a new PostgreSQL replica: bounded by the live data, not by the history.

A replica that joins reads ``tuco_state`` (one row per live key) under the head
it saw, instead of replaying ``tuco_events`` from sequence 1. This script checks
that claim with numbers. It fills a fresh database directly with SQL (a long
history over few keys, about 5 % of the events DELETEs so some keys end absent),
then reports the median over rounds of:

- ``serve``: a real ``tuco serve`` process from spawn until ``GET /readyz`` is 200,
  with the server's own ``replay_finished`` figures; it must exit 0 on SIGTERM;
- ``bootstrap``: ``PostgresTransactionLog.read_events()`` applied to a ``Store``
  in this process (connecting, checking the schema and opening the pool included);
- ``replay``: the whole ``tuco_events`` table read in sequence order through a
  server-side cursor and applied to a ``Store``, which is what a design without
  ``tuco_state`` would have to do at every start;
- ``serve (empty)``: the same process against an empty database, the fixed cost.

Bootstrap and replay must end in the same map, revisions included, or the run fails. Run alone: the
machine has two cores and the server, PostgreSQL and this script share them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import queue
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from tuco.core.events import Entry, Event, EventType
from tuco.core.store import Store
from tuco.log._pg_schema import ensure_schema
from tuco.log.postgres import PostgresTransactionLog

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS-postgres-bootstrap.md"
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
VALUE_BYTES = 64
REPLAY_CHUNK = 10_000
READY_POLL = 0.002
READY_TIMEOUT = 120.0

T = TypeVar("T")

# Deterministic filler: the history, then the state as the last event of each key
# that is a PUT (the table tuco itself keeps in step with every batch).
# A DELETE is ~5 % of events (first hash byte < 13 of 256), spread over all keys.
_FILL_EVENTS = f"""
INSERT INTO tuco_events (sequence, type, key, value)
SELECT n,
       CASE WHEN d THEN 2 ELSE 1 END,
       convert_to('key-' || (n % $2::bigint), 'UTF8'),
       CASE WHEN d THEN ''::bytea ELSE convert_to(lpad(n::text, {VALUE_BYTES}, 'v'), 'UTF8') END
FROM (SELECT n, get_byte(sha256(int8send(n)), 0) < 13 AS d FROM generate_series(1, $1::bigint) n) g
"""
# With the revisions of each key's current life (since its last DELETE), as a replay derives them.
_FILL_STATE = """
INSERT INTO tuco_state (key, value, sequence, create_revision, version)
SELECT last.key, last.value, last.sequence, life.created, life.puts FROM (
    SELECT DISTINCT ON (key) key, type, value, sequence FROM tuco_events ORDER BY key, sequence DESC
) last JOIN (
    SELECT e.key, min(e.sequence) AS created, count(*) AS puts
    FROM tuco_events e LEFT JOIN (
        SELECT key, max(sequence) AS cut FROM tuco_events WHERE type = 2 GROUP BY key) d ON d.key = e.key
    WHERE e.type = 1 AND e.sequence > coalesce(d.cut, 0)
    GROUP BY e.key
) life ON life.key = last.key
WHERE last.type = 1
"""
_REPLAY = "SELECT sequence, type, key, value FROM tuco_events ORDER BY sequence"


@dataclass
class Filled:
    """What the filler wrote, checked against the database."""

    events: int
    keys: int
    live_keys: int
    deletes: int
    seconds: float
    events_mib: float
    state_mib: float


@dataclass
class Served:
    """One ``tuco serve`` start: wall time to ready, the server's CPU by then, and its own replay line."""

    ready_seconds: float
    cpu_seconds: float
    replay: dict[str, Any] = field(default_factory=dict)


def dsn_for(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when present, as ``tuco serve`` does, so in-process figures compare."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


async def create_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(dsn_for(name))
    try:
        await ensure_schema(conn)
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def fill(name: str, events: int, keys: int) -> Filled:
    """Write the history and the matching state with SQL, then check the invariants."""
    conn = await asyncpg.connect(dsn_for(name))
    try:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(_FILL_EVENTS, events, keys)
            await conn.execute(_FILL_STATE)
            await conn.execute("UPDATE tuco_head SET sequence = $1 WHERE id = 1", events)
        await conn.execute("VACUUM ANALYZE tuco_events")
        await conn.execute("VACUUM ANALYZE tuco_state")
        seconds = time.perf_counter() - started
        count, low, high, deletes, distinct = await conn.fetchrow(
            "SELECT count(*), min(sequence), max(sequence), count(*) FILTER (WHERE type = 2), count(DISTINCT key)"
            " FROM tuco_events"
        )
        live = await conn.fetchval("SELECT count(*) FROM tuco_state")
        head = await conn.fetchval("SELECT sequence FROM tuco_head WHERE id = 1")
        # Independently of tuco_state: keys whose newest event is a DELETE.
        dead = await conn.fetchval(
            "SELECT count(*) FROM tuco_events e WHERE type = 2 AND NOT EXISTS"
            " (SELECT 1 FROM tuco_events l WHERE l.key = e.key AND l.sequence > e.sequence)"
        )
        stale = await conn.fetchval(
            "SELECT count(*) FROM tuco_state s JOIN tuco_events e USING (sequence)"
            " WHERE e.key <> s.key OR e.value <> s.value OR e.type <> 1"
        )
        events_bytes = await conn.fetchval("SELECT pg_total_relation_size('tuco_events')")
        state_bytes = await conn.fetchval("SELECT pg_total_relation_size('tuco_state')")
    finally:
        await conn.close()
    checks = {
        "event count": count == events,
        "sequences 1..N": (low, high) == (1, events),
        "head = N": head == events,
        "every key has events": distinct == keys,
        "state = keys whose last event is a PUT": live == keys - dead,
        "some keys deleted, most live": 0 < dead < keys and live > 0,
        "state rows match their events": stale == 0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise RuntimeError(f"filled database breaks invariants: {', '.join(failed)}")
    return Filled(events, keys, live, deletes, seconds, events_bytes / 2**20, state_bytes / 2**20)


@dataclass
class Loaded:
    """One in-process load into a ``Store``: wall and CPU seconds, rows read, and the resulting map with revisions."""

    seconds: float
    cpu_seconds: float
    rows: int
    state: dict[str, Entry]


async def bootstrap(dsn: str) -> Loaded:
    """Time tuco's own bootstrap: ``read_events()`` into a ``Store``."""
    store = Store()
    rows = 0
    log = PostgresTransactionLog(dsn)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        async for batch in log.read_events():
            rows += len(batch)
            store.apply_batch(batch)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await log.aclose()
    return Loaded(seconds, cpu, rows, _entries(store))


async def replay(dsn: str) -> Loaded:
    """Time replaying the whole history from ``tuco_events`` into a ``Store``, in cursor batches."""
    store = Store()
    rows = 0
    started, cpu = time.perf_counter(), time.process_time()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await conn.cursor(_REPLAY)
            while chunk := await cursor.fetch(REPLAY_CHUNK):
                rows += len(chunk)
                store.apply_batch([Event(r[0], EventType(r[1]), r[2].decode(), r[3]) for r in chunk])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await conn.close()
    return Loaded(seconds, cpu, rows, _entries(store))


def _entries(store: Store) -> dict[str, Entry]:
    return {key: store.entry(key) for key in store.snapshot()}


def probe_ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def serve(dsn: str, log_dir: Path, label: str) -> Served:
    """Spawn ``tuco serve``, time it to ``/readyz`` = 200, stop it with SIGTERM and require exit 0."""
    env = {
        **os.environ,
        "TUCO_LOG_BACKEND": "postgres",
        "TUCO_DATABASE_URL": dsn,
        "TUCO_PORT": "0",
        "TUCO_HOST": "127.0.0.1",
        "TUCO_LOG_LEVEL": "info",
        "TUCO_LOG_FORMAT": "json",
        "TUCO_DATA_DIR": str(log_dir / "data"),
    }
    lines: queue.Queue[dict[str, Any]] = queue.Queue()
    stderr_path = log_dir / f"{label}.stderr"
    stdout_path = log_dir / f"{label}.stdout"
    with stderr_path.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuco", "serve"], stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=log_dir
        )
        reader = threading.Thread(target=_read_lines, args=(proc, lines, stdout_path), daemon=True)
        reader.start()
        try:
            seen: list[dict[str, Any]] = []
            port = _wait_for(lines, seen, "listening", proc)["port"]
            deadline = started + READY_TIMEOUT
            while not probe_ready(port):
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"{label}: server never became ready (see {stdout_path}, {stderr_path})")
                time.sleep(READY_POLL)
            ready = time.perf_counter() - started
            cpu = process_cpu_seconds(proc.pid)
            replay_line = _wait_for(lines, seen, "replay_finished", proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            reader.join(timeout=5)
    if code != 0:
        raise RuntimeError(f"{label}: server exited with {code} on SIGTERM (see {stderr_path})")
    return Served(ready, cpu, replay_line)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (fields 14 and 15 of /proc/<pid>/stat), steadier than wall time."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read_lines(proc: subprocess.Popen[bytes], lines: queue.Queue[dict[str, Any]], copy: Path) -> None:
    """Forward the server's JSON log lines, keeping a copy on disk for post-mortems."""
    if proc.stdout is None:
        return
    with copy.open("wb") as out:
        for raw in proc.stdout:
            out.write(raw)
            with contextlib.suppress(ValueError):
                lines.put(json.loads(raw))


def _wait_for(
    lines: queue.Queue[dict[str, Any]], seen: list[dict[str, Any]], event: str, proc: subprocess.Popen[bytes]
) -> dict[str, Any]:
    for line in seen:
        if line.get("event") == event:
            return line
    deadline = time.perf_counter() + READY_TIMEOUT
    while time.perf_counter() < deadline:
        try:
            line = lines.get(timeout=0.05)
        except queue.Empty:
            if proc.poll() is not None and lines.empty():
                break
            continue
        seen.append(line)
        if line.get("event") == event:
            return line
    raise RuntimeError(f"the server logged no {event!r} line")


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit or "unknown",
        "load": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


async def server_version() -> str:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


@dataclass
class Dataset:
    """All measurements against one filled database."""

    filled: Filled
    boot: list[Loaded] = field(default_factory=list)
    replay: list[Loaded] = field(default_factory=list)
    served: list[Served] = field(default_factory=list)
    served_empty: list[Served] = field(default_factory=list)


def measure_dataset(
    name: str, events: int, keys: int, n: int, log_dir: Path, *, empty: str | None, with_serve: bool
) -> Dataset:
    """Fill a database, then run the rounds interleaved so a noisy neighbour hits every measurement alike."""
    print(f"filling {name}: {events:,} events over {keys:,} keys", flush=True)
    run(create_database(name))
    filled = run(fill(name, events, keys))
    print(f"  filled in {filled.seconds:.1f} s: {filled.live_keys:,} live keys, {filled.deletes:,} deletes", flush=True)
    dsn = dsn_for(name)
    data = Dataset(filled)
    # Warm the page cache and the imports once, untimed, so round 1 is not the odd one out.
    run(bootstrap(dsn))
    for i in range(1, n + 1):
        said: list[str] = []
        if with_serve and empty is not None:
            data.served_empty.append(serve(dsn_for(empty), log_dir, f"empty-{i}"))
            said.append(f"serve(empty) {data.served_empty[-1].ready_seconds:.3f} s")
        if with_serve:
            data.served.append(_serve_checked(dsn, log_dir, f"{name}-{i}", filled))
            said.append(f"serve {data.served[-1].ready_seconds:.3f} s")
        data.boot.append(run(bootstrap(dsn)))
        data.replay.append(run(replay(dsn)))
        said.append(f"bootstrap {data.boot[-1].seconds:.3f} s, replay {data.replay[-1].seconds:.3f} s")
        print(f"  round {i}/{n}: " + ", ".join(said), flush=True)
        boot, full = data.boot[-1], data.replay[-1]
        if boot.state != full.state:
            differ = {k for k in boot.state.keys() | full.state.keys() if boot.state.get(k) != full.state.get(k)}
            raise RuntimeError(f"bootstrap and replay disagree on {len(differ)} keys (values or revisions)")
        if len(boot.state) != filled.live_keys or boot.rows != filled.live_keys or full.rows != events:
            raise RuntimeError(f"bootstrap read {boot.rows} rows, replay {full.rows}: not the filled data")
        boot.state, full.state = {}, {}  # compared; free the memory
    print(
        f"  bootstrap == replay in every round: {filled.live_keys:,} keys, identical values and revisions", flush=True
    )
    return data


def _serve_checked(dsn: str, log_dir: Path, label: str, filled: Filled) -> Served:
    served = serve(dsn, log_dir, label)
    if served.replay.get("keys") != filled.live_keys or served.replay.get("last_sequence") != filled.events:
        raise RuntimeError(f"tuco serve loaded {served.replay} instead of {filled.live_keys} keys at {filled.events}")
    return served


def report(args: argparse.Namespace, info: dict[str, str], main: Dataset, scale: Dataset | None) -> str:
    f = main.filled
    boot, rep = median([r.seconds for r in main.boot]), median([r.seconds for r in main.replay])
    ready = median([s.ready_seconds for s in main.served])
    ready_empty = median([s.ready_seconds for s in main.served_empty])
    # Rounds interleave empty and full starts, so their per-round difference cancels shared noise.
    added = median([s.ready_seconds - e.ready_seconds for s, e in zip(main.served, main.served_empty, strict=True)])
    server_replay = median([float(s.replay["seconds"]) for s in main.served])
    command = " ".join([".venv/bin/python", "bench/pg_bootstrap.py", *sys.argv[1:]])

    def row(what: str, rows: int, walls: list[float], cpus: list[float] | None) -> str:
        cpu = f"{median(cpus):.3f}" if cpus else "—"
        each = ", ".join(f"{v:.3f}" for v in walls)
        return f"| {what} | {rows:,} | **{median(walls):.3f}** | {cpu} | {each} |"

    lines = [
        "# PostgreSQL replica start-up: live data vs history",
        "",
        "Acceptance item: start-up of a new replica against a database with "
        f"{f.events:,} events for {f.keys:,} live keys takes time bounded by the live data.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, Linux {info['kernel']}, Python {info['python']}",
        f"- PostgreSQL {info['postgres']} on 127.0.0.1 (same machine), trust auth",
        f"- Commit: `{info['commit']}`",
        f"- Command: `{command}`",
        f"- Data: {f.events:,} events (`key-<n % {f.keys}>`, {VALUE_BYTES}-byte values, {f.deletes:,} DELETEs = "
        f"{100 * f.deletes / f.events:.1f} %) leaving {f.live_keys:,} live keys; `tuco_events` {f.events_mib:.0f} MiB, "
        f"`tuco_state` {f.state_mib:.1f} MiB; filled with SQL in {f.seconds:.1f} s; invariants checked",
        f"- Load average (1/5/15 min) at start: {info['load']}; at end: {info['load_end']}",
        f"- {args.rounds} rounds, each running (d), (a), (b), (c) in turn, after one untimed warm-up bootstrap",
        "",
        "| measurement | rows read | median wall s | median CPU s | wall s per round |",
        "|---|---:|---:|---:|---:|",
        row(
            "(a) `tuco serve`: spawn → `/readyz` 200",
            f.live_keys,
            [s.ready_seconds for s in main.served],
            [s.cpu_seconds for s in main.served],
        ),
        row(
            "(a) … its own `replay_finished` seconds",
            f.live_keys,
            [float(s.replay["seconds"]) for s in main.served],
            None,
        ),
        row(
            "(b) bootstrap in process: `read_events()` → `Store`",
            main.boot[0].rows,
            [r.seconds for r in main.boot],
            [r.cpu_seconds for r in main.boot],
        ),
        row(
            "(c) full replay: `tuco_events` by sequence → `Store`",
            main.replay[0].rows,
            [r.seconds for r in main.replay],
            [r.cpu_seconds for r in main.replay],
        ),
        row(
            "(d) `tuco serve` on an empty database: spawn → `/readyz` 200",
            0,
            [s.ready_seconds for s in main.served_empty],
            [s.cpu_seconds for s in main.served_empty],
        ),
        row(
            "(d) … its own `replay_finished` seconds", 0, [float(s.replay["seconds"]) for s in main.served_empty], None
        ),
    ]
    if scale is not None:
        s = scale.filled
        lines += [
            row(
                f"(b') bootstrap, {s.live_keys:,} live of {s.keys:,} keys, {s.events:,} events",
                scale.boot[0].rows,
                [r.seconds for r in scale.boot],
                [r.cpu_seconds for r in scale.boot],
            ),
            row(
                "(c') full replay of that database",
                scale.replay[0].rows,
                [r.seconds for r in scale.replay],
                [r.cpu_seconds for r in scale.replay],
            ),
        ]
    lines += [
        "",
        "CPU: for (a) and (d) the server process's utime + stime from spawn to ready (10 ms ticks); for (b) and (c) "
        "this process's CPU (driver decoding and the `Store`), PostgreSQL's own work not included.",
        "",
        "Checks: bootstrap (b) and full replay (c) ended in the same map (same keys, values and revisions) in "
        "every round of every dataset, and every `tuco serve` reported the expected `keys` and `last_sequence` "
        "and exited 0 on SIGTERM.",
        "",
        "## Reading",
        "",
        f"Bootstrap reads {main.boot[0].rows:,} state rows in {boot:.3f} s; replaying all {main.replay[0].rows:,} "
        f"events into the same map takes {rep:.3f} s, {rep / boot:.0f} times longer. A real `tuco serve` process is "
        f"ready {ready:.3f} s after spawn (its own `replay_finished`: {server_replay:.3f} s to read the state "
        f"and start the log); against an empty database the same process is ready in {ready_empty:.3f} s "
        f"(interpreter, imports, connecting, schema check). Paired round by round, the {f.live_keys:,} live keys "
        f"under a {f.events:,}-event history add {added:.3f} s to start-up; "
        f"replaying that history instead would add about {rep:.3f} s.",
    ]
    if scale is not None:
        s = scale.filled
        sb, sr = median([r.seconds for r in scale.boot]), median([r.seconds for r in scale.replay])
        lines += [
            "",
            f"Scaling: with the same {s.events:,} events spread over {s.keys:,} keys ({s.live_keys:,} live), "
            f"bootstrap takes {sb:.3f} s ({sb / boot:.1f} times the {f.live_keys:,}-key figure for "
            f"{s.live_keys / f.live_keys:.1f} times the keys) and the full replay {sr:.3f} s (against {rep:.3f} s).",
        ]
    lines += [
        "",
        "How: `bench/pg_bootstrap.py` creates a fresh `tuco_bench_<random>` database, lets tuco create its schema "
        "(`ensure_schema`), fills `tuco_events` with `generate_series`, derives `tuco_state` as the last event per key "
        "(PUTs only), sets `tuco_head`, runs VACUUM ANALYZE, and drops the database at the end. (a) and (d) poll "
        f"`/readyz` every {READY_POLL * 1000:.0f} ms. (b) includes tuco's connect, schema check and pool creation; "
        f"(c) includes one connect and reads through a server-side cursor {REPLAY_CHUNK:,} rows at a time, the "
        "chunk size bootstrap uses. Both run on uvloop, as `tuco serve` does.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scale-keys", type=int, default=100_000, help="also measure bootstrap with this many keys (0: skip)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.events < 1 or args.keys < 1 or args.rounds < 1 or not args.keys <= args.events:
        parser.error("need 1 <= keys <= events and rounds >= 1")
    if args.scale_keys and not args.keys < args.scale_keys <= args.events:
        parser.error("--scale-keys must be between --keys and --events (or 0)")

    info = machine()
    info["postgres"] = run(server_version())
    tag = secrets.token_hex(4)
    empty, full, scaled = f"tuco_bench_{tag}_empty", f"tuco_bench_{tag}", f"tuco_bench_{tag}_scale"
    scale: Dataset | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="tuco-pg-bootstrap-") as tmp:
            log_dir = Path(tmp)
            run(create_database(empty))
            main_set = measure_dataset(full, args.events, args.keys, args.rounds, log_dir, empty=empty, with_serve=True)
            run(drop_database(full))
            if args.scale_keys:
                scale = measure_dataset(
                    scaled, args.events, args.scale_keys, args.rounds, log_dir, empty=None, with_serve=False
                )
    finally:
        for name in (empty, full, scaled):
            with contextlib.suppress(Exception):
                run(drop_database(name))
    info["load_end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    text = report(args, info, main_set, scale)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
