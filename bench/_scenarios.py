"""The benchmark scenarios and how each one is run.

Each load scenario gets a fresh data directory and a fresh server, is preloaded
through the API, warmed up, then measured for several rounds; the figures kept
are the per-field medians of the rounds. A scenario that fails records its
error and the run goes on, so one broken feature does not hide the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _data import build_log, preload_http
from _proc import status_kib
from _server import (
    BENCH_DIR,
    ServerDiedError,
    ServerProcess,
    free_port,
    reference_command,
    tuco_command,
    uvicorn_command,
)
from _wrk import RoundResult, run_round

__all__ = ["LOAD_SCENARIOS", "LoadScenario", "Settings", "base_env", "run_load", "run_startup", "server_command"]

DATABASE_SERVER = "postgresql://postgres@127.0.0.1:5432"
KEY_VALUE_BYTES_1M = 16 + 100


@dataclass(frozen=True, slots=True)
class Settings:
    """How long and how often to measure."""

    rounds: int
    seconds: float
    warmup: float
    pure_twin: bool = False
    """Beside each tuco server, the same on the pure-Python build, measured round by round (run.py --pure-twin)."""


def pure_env() -> dict[str, str]:
    """What makes a server run the pure-Python build: ``PYTHONPATH`` without ``build/compiled``."""
    kept = [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and not p.rstrip("/").endswith("compiled")
    ]
    return {"PYTHONPATH": os.pathsep.join(kept)}


@dataclass(frozen=True, slots=True)
class LoadScenario:
    """One wrk workload against one freshly started server."""

    name: str
    title: str
    connections: int = 64
    keys: int = 10_000
    value_bytes: int = 64
    put_percent: int = 0
    env: dict[str, str] = field(default_factory=dict)
    server: str = "tuco"
    """What answers: ``tuco`` (``tuco serve``), ``reference``, or under uvicorn ``asgi-bare`` or ``asgi-tuco``."""
    tls: bool = False
    postgres: bool = False
    quick: bool = False
    max_seconds: float | None = None
    baseline: str | None = None
    """The scenario whose server runs beside this one, a round of it right before each round of this
    (``ceiling``, ``asgi_bare``): the ratios to it are taken from rounds seconds apart."""
    auth: bool = False
    """TUCO_AUTH=token, and every request (preload and load) carries a bearer token granted write on the keys."""
    preloaded: bool = True
    """False: no key is written first, so every GET asks for an absent key (404)."""

    @property
    def reference(self) -> bool:
        """A server with no store: nothing to preload, no data directory, no tuco settings."""
        return self.server in (REFERENCE, ASGI_BARE)


TUCO, REFERENCE, ASGI_BARE, ASGI_TUCO = "tuco", "reference", "asgi-bare", "asgi-tuco"
RELAXED = {"TUCO_LOG_SYNC": "everysec"}
BIG_VALUES = {"TUCO_MAX_VALUE_BYTES": str(1 << 20)}

LOAD_SCENARIOS: list[LoadScenario] = [
    LoadScenario("ceiling", "reference server, GET", server=REFERENCE, quick=True),
    LoadScenario("get", "GET", quick=True, baseline="ceiling"),
    LoadScenario("put_durable", "PUT, durable log (default)", put_percent=100, quick=True),
    LoadScenario(
        "put_relaxed", "PUT, TUCO_LOG_SYNC=everysec", put_percent=100, env=RELAXED, quick=True, baseline="ceiling"
    ),
    LoadScenario("mix", "90/10 GET/PUT, everysec", put_percent=10, env=RELAXED, quick=True, baseline="ceiling"),
    LoadScenario("mix_durable", "90/10 GET/PUT, durable log", put_percent=10),
    LoadScenario("get_miss", "GET of absent keys (404)", preloaded=False),
    LoadScenario("get_1k", "GET, 1 KiB values", value_bytes=1024),
    LoadScenario("put_1k", "PUT, 1 KiB values, durable", put_percent=100, value_bytes=1024),
    LoadScenario("get_64k", "GET, 64 KiB values (1,000 keys)", keys=1000, value_bytes=65536, env=BIG_VALUES),
    LoadScenario(
        "put_64k",
        "PUT, 64 KiB values (1,000 keys), durable",
        put_percent=100,
        keys=1000,
        value_bytes=65536,
        env=BIG_VALUES,
        max_seconds=5,
    ),
    LoadScenario("get_auth", "GET with a bearer token, TUCO_AUTH=token", auth=True),
    LoadScenario("get_c1", "GET, 1 connection", connections=1),
    LoadScenario("get_c256", "GET, 256 connections", connections=256),
    LoadScenario("get_tls", "GET over TLS", tls=True),
    LoadScenario("pg_put", "PUT, PostgreSQL log", put_percent=100, postgres=True),
    LoadScenario("pg_get", "GET, PostgreSQL log", postgres=True),
    LoadScenario("asgi_bare", "bare ASGI app under uvicorn, GET", server=ASGI_BARE),
    LoadScenario("asgi_get", "tuco's ASGI app under uvicorn, GET", server=ASGI_TUCO, quick=True, baseline="asgi_bare"),
    LoadScenario(
        "asgi_put",
        "tuco's ASGI app under uvicorn, PUT, everysec",
        put_percent=100,
        env=RELAXED,
        server=ASGI_TUCO,
        baseline="asgi_bare",
    ),
]


def base_env(port: int, data_dir: Path, level: str = "warning") -> dict[str, str]:
    return {
        "TUCO_HOST": "127.0.0.1",
        "TUCO_PORT": str(port),
        "TUCO_DATA_DIR": str(data_dir),
        "TUCO_LOG_LEVEL": level,
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def _tls_files(directory: Path) -> Iterator[tuple[dict[str, str], ssl.SSLContext]]:
    """A trustme CA and a certificate for 127.0.0.1; the env that points tuco at them."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    yield {"TUCO_TLS_CERT_FILE": str(cert_file), "TUCO_TLS_KEY_FILE": str(key_file)}, client


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{DATABASE_SERVER}/postgres", timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def _fresh_database(name: str) -> Iterator[dict[str, str]]:
    """Create a database for one scenario and drop it afterwards."""
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": f"{DATABASE_SERVER}/{name}"}
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _median_round(rounds: list[RoundResult]) -> dict[str, Any]:
    """Per-field median over rounds; errors are summed since any error matters."""
    fields = ["requests", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_us_per_request"]
    median = {f: round(statistics.median(getattr(r, f) for r in rounds), 3) for f in fields}
    errors: dict[str, int] = {}
    for r in rounds:
        for kind, n in r.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    median["errors"] = errors
    return median


def server_command(sc: LoadScenario, port: int) -> list[str]:
    """How to start the server of scenario ``sc`` on ``port``."""
    if sc.server == REFERENCE:
        return reference_command(port)
    if sc.server == ASGI_BARE:
        return uvicorn_command("asgi_bare:app", port, app_dir=BENCH_DIR)
    if sc.server == ASGI_TUCO:
        return uvicorn_command("tuco.asgi:app", port)
    return tuco_command()


def _start(sc: LoadScenario, workdir: Path, env: dict[str, str], name: str | None = None) -> ServerProcess:
    port = free_port()
    if sc.reference:
        return ServerProcess(name or sc.name, server_command(sc, port), {}, port)
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = {**base_env(port, data_dir), **sc.env, **env}
    return ServerProcess(name or sc.name, server_command(sc, port), env, port, tls=sc.tls)


def _rounds_of(server: ServerProcess, sc: LoadScenario, header: str = "") -> functools.partial[RoundResult]:
    """One wrk round of scenario ``sc``'s load against ``server``, called with the round's ``seconds``."""
    return functools.partial(
        run_round,
        url=server.url,
        pid=server.pid,
        connections=sc.connections,
        keys=sc.keys,
        value_bytes=sc.value_bytes,
        put_percent=sc.put_percent,
        header=header,
    )


def _paired_baseline(stack: contextlib.ExitStack, sc: LoadScenario, workdir: Path) -> functools.partial[RoundResult]:
    """The baseline's server (the reference, the bare ASGI app) beside the one measured, round by round.

    On a shared machine the background load drifts within minutes; a ratio
    of rounds taken seconds apart is far steadier than one of scenarios
    taken minutes apart.
    """
    base = next(s for s in LOAD_SCENARIOS if s.name == sc.baseline)
    base_dir = workdir / f"baseline-{base.name}"
    base_dir.mkdir()
    server = stack.enter_context(_start(base, base_dir, {}, name=f"{sc.name}-{base.name}"))
    server.wait_ready(timeout=30)
    if not base.reference:
        preload_http(server.url, base.keys, base.value_bytes)
    measure = _rounds_of(server, base)
    measure(seconds=1)
    return measure


def _pure_twin(
    stack: contextlib.ExitStack,
    sc: LoadScenario,
    workdir: Path,
    env: dict[str, str],
    tls: ssl.SSLContext | None,
    warmup: float,
) -> functools.partial[RoundResult]:
    """The same scenario on the pure-Python build, beside the one measured, round by round (as the ceiling)."""
    twin_dir = workdir / "pure"
    twin_dir.mkdir()
    if sc.postgres:  # a database of its own: a replica of the measured one's would follow its writes meanwhile
        env = {**env, **stack.enter_context(_fresh_database(f"tuco_bench_{sc.name}_pure_{int(time.time())}"))}
    server = stack.enter_context(_start(sc, twin_dir, {**env, **pure_env()}, name=f"{sc.name}-pure"))
    server.wait_ready(timeout=30)
    header = _bench_token(server.url) if sc.auth else ""
    if sc.preloaded:
        preload_http(server.url, sc.keys, sc.value_bytes, tls=tls, header=header)
    measure = _rounds_of(server, sc, header)
    measure(seconds=warmup)
    return measure


def _open_twin(stack: contextlib.ExitStack, sc: LoadScenario, workdir: Path) -> functools.partial[RoundResult]:
    """The same GET load on a tuco without authentication, beside the authenticated one, round by round.

    The authenticated scenario's figure is the ratio of server CPU per request of
    rounds taken seconds apart (as for the ceiling): steadier than two scenarios.
    """
    twin_dir = workdir / "open"
    twin_dir.mkdir()
    plain = LoadScenario(f"{sc.name}-open", "GET, authentication off", keys=sc.keys, value_bytes=sc.value_bytes)
    server = stack.enter_context(_start(plain, twin_dir, {}))
    server.wait_ready(timeout=30)
    preload_http(server.url, sc.keys, sc.value_bytes)
    measure = _rounds_of(server, sc)
    measure(seconds=1)
    return measure


def run_load(sc: LoadScenario, settings: Settings) -> dict[str, Any]:
    """Run one load scenario; return its rounds, medians and server facts."""
    seconds = min(settings.seconds, sc.max_seconds or settings.seconds)
    result: dict[str, Any] = {
        "title": sc.title,
        "kind": "load",
        "connections": sc.connections,
        "keys": sc.keys,
        "value_bytes": sc.value_bytes,
        "put_percent": sc.put_percent,
        "preloaded": sc.preloaded,
        "server_env": sc.env,
        "round_seconds": seconds,
    }
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"tuco-bench-{sc.name}-")))
        env: dict[str, str] = {}
        tls: ssl.SSLContext | None = None
        if sc.tls:
            tls_env, tls = stack.enter_context(_tls_files(workdir))
            env.update(tls_env)
        if sc.postgres:
            env.update(stack.enter_context(_fresh_database(f"tuco_bench_{sc.name}_{int(time.time())}")))
        if sc.auth:
            env.update(TUCO_AUTH="token", TUCO_BOOTSTRAP_TOKEN=_BENCH_BOOTSTRAP)
        server = stack.enter_context(_start(sc, workdir, env))
        result["ready_seconds"] = round(server.wait_ready(timeout=30), 3)
        header = _bench_token(server.url) if sc.auth else ""
        if not sc.reference and sc.preloaded:
            result["preload_seconds"] = round(
                preload_http(server.url, sc.keys, sc.value_bytes, tls=tls, header=header), 2
            )
        measure = _rounds_of(server, sc, header)
        baseline = _paired_baseline(stack, sc, workdir) if sc.baseline else None
        open_twin = _open_twin(stack, sc, workdir) if sc.auth else None
        pure = (
            _pure_twin(stack, sc, workdir, env, tls, settings.warmup)
            if settings.pure_twin and not sc.reference and sc.server != ASGI_BARE
            else None
        )
        measure(seconds=settings.warmup)
        rounds, ratios, twins, pures = [], [], [], []
        for _ in range(settings.rounds):
            # The baseline's round right before each round: both see the same background load.
            base = baseline(seconds=seconds) if baseline else None
            twin = open_twin(seconds=seconds) if open_twin else None
            if pure is not None:
                pures.append(pure(seconds=seconds))
            rounds.append(measure(seconds=seconds))
            if twin is not None:
                cpu = rounds[-1].cpu_us_per_request
                twins.append(
                    {
                        "open_cpu_us_per_request": twin.cpu_us_per_request,
                        "open_rps": twin.rps,
                        "cpu_ratio": round(cpu / twin.cpu_us_per_request, 4) if twin.cpu_us_per_request else None,
                    }
                )
            server.check_alive()
            if base is not None and base.rps and base.cpu_us_per_request:
                ratios.append(
                    {
                        f"{sc.baseline}_rps": base.rps,
                        f"{sc.baseline}_cpu_us_per_request": base.cpu_us_per_request,
                        "ratio": round(rounds[-1].rps / base.rps, 4),
                        "cpu_ratio": round(rounds[-1].cpu_us_per_request / base.cpu_us_per_request, 4),
                    }
                )
        result["peak_rss_kib"] = status_kib(server.pid, "VmHWM")
        result["rounds"] = [r.as_dict() for r in rounds]
        result["median"] = _median_round(rounds)
        if pures:
            result["pure_rounds"] = [r.as_dict() for r in pures]
            result["pure_median"] = _median_round(pures)
        if twins:
            result["paired_open"] = twins
            result["median"]["open_cpu_us_per_request"] = statistics.median(t["open_cpu_us_per_request"] for t in twins)
            result["median"]["cpu_ratio_to_open"] = statistics.median(t["cpu_ratio"] for t in twins if t["cpu_ratio"])
        if ratios:
            name = sc.baseline
            result["baseline"] = name
            result[f"paired_{name}"] = ratios
            median = result["median"]
            median[f"{name}_rps"] = statistics.median(r[f"{name}_rps"] for r in ratios)
            median[f"{name}_cpu_us_per_request"] = statistics.median(r[f"{name}_cpu_us_per_request"] for r in ratios)
            median[f"ratio_to_{name}"] = statistics.median(r["ratio"] for r in ratios)
            median[f"cpu_ratio_to_{name}"] = statistics.median(r["cpu_ratio"] for r in ratios)
        result["exit_code"] = server.stop()
        # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal it caught, as it should.
        clean = (0, -signal.SIGTERM) if sc.server in (ASGI_BARE, ASGI_TUCO) else (0,)
        if result["exit_code"] not in clean:
            raise ServerDiedError(f"{sc.name}: server exited with {result['exit_code']} on SIGTERM")
    return result


_BENCH_BOOTSTRAP = "bench-bootstrap-0123456789abcdefghijklmnop"


def _bench_token(url: str) -> str:
    """A token granted write on the benchmark's keys, as an ``Authorization`` header line (without CRLF)."""
    import httpx

    created = httpx.post(
        f"{url}/v1/tokens",
        json={"description": "bench", "grants": [{"prefix": "key-", "permission": "write"}]},
        headers={"Authorization": f"Bearer {_BENCH_BOOTSTRAP}"},
        timeout=10,
    )
    created.raise_for_status()
    return f"Authorization: Bearer {created.json()['token']}"


STARTUP_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
"""glibc's threshold for mmap pinned at its default for the start-up servers, both builds.

Left dynamic, it rises to the size of each large block freed, so the store's dict tables outgrown during
replay stay in the heap or go back to the system by chance: the loaded heap varied by 4 MiB between starts
of the same build (1 % of it, 8 B a key between two store sizes). Pinned, every large block is mapped and
returned, and the heap varies by 0.2 %: what is measured is what the store holds, not what malloc kept.
The naive loop replay is compared with runs under it too (:func:`naive_env`).
"""


def naive_env() -> dict[str, str]:
    """The naive parse loop's environment: the start-up servers' malloc, so both sides of the ratio run under one.

    Pinned, every large block (a file read, an outgrown dict table) is mapped afresh; left dynamic, it is
    reused from the heap. Whichever is faster on a machine, the ratio should not measure it.
    """
    return {**os.environ, **STARTUP_MALLOC}


def _empty_rss_kib(workdir: Path, extra: dict[str, str] | None = None, name: str = "empty") -> tuple[int, int]:
    """VmRSS and RssAnon of a ready tuco with nothing stored: the baselines per-key memory is measured against."""
    data_dir = workdir / name
    data_dir.mkdir()
    port = free_port()
    env = {**base_env(port, data_dir), **STARTUP_MALLOC, **(extra or {})}
    with ServerProcess("startup-empty", tuco_command(), env, port) as server:
        server.wait_ready()
        time.sleep(0.3)
        rss = status_kib(server.pid, "VmRSS"), status_kib(server.pid, "RssAnon")
        server.stop()
    return rss


def _replay_once(seed: Path, workdir: Path, index: int | str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Start tuco on a copy of the seeded log; time spawn to ready and read its memory."""
    data_dir = workdir / f"round{index}"
    data_dir.mkdir()
    shutil.copyfile(seed, data_dir / "tuco.log")
    port = free_port()
    env = {**base_env(port, data_dir, level="info"), **STARTUP_MALLOC, **(extra or {})}
    with ServerProcess(f"startup-{index}", tuco_command(), env, port) as server:
        ready = server.wait_ready(timeout=120)
        rss = status_kib(server.pid, "VmRSS")
        heap = status_kib(server.pid, "RssAnon")
        hwm = status_kib(server.pid, "VmHWM")
        replay = next((e for e in server.log_events() if e.get("event") == "replay_finished"), None)
        code = server.stop()
    if code != 0:
        raise ServerDiedError(f"startup round {index}: server exited with {code} on SIGTERM")
    return {"ready_seconds": round(ready, 3), "rss_kib": rss, "heap_kib": heap, "peak_rss_kib": hwm, "replay": replay}


def _naive_replay(seed: Path) -> dict[str, Any]:
    """bench/naive_replay.py on the seeded log, in a process of its own: its records and seconds."""
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "naive_replay.py"), str(seed)],
        capture_output=True,
        text=True,
        timeout=300,
        env=naive_env(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"naive_replay.py failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def heap_slope(rounds: list[dict[str, Any]], events: int) -> float:
    """The heap (RssAnon) a key adds beyond its key and value: from half the keys to all of them, medians.

    What an empty server holds differs between builds (bytecode, modules imported lazily during replay)
    and would be charged to the keys by ``(loaded - empty) / keys``; between two store sizes it cancels.
    """
    full = statistics.median(r["heap_kib"] for r in rounds)
    half = statistics.median(r["half_heap_kib"] for r in rounds)
    return round((full - half) * 1024 / (events - events // 2) - KEY_VALUE_BYTES_1M, 1)


def heap_resolution(rounds: list[dict[str, Any]], events: int) -> float:
    """How far apart starts of one build put the loaded heap, in bytes a key of the slope: below it, no difference."""
    heaps = [r["heap_kib"] for r in rounds]
    return round((max(heaps) - min(heaps)) * 1024 / (events - events // 2), 2)


def paired_replay_ratio(rounds: list[dict[str, Any]]) -> float:
    """The median over rounds of the naive loop's seconds over the server's replay, each pair run back to back.

    Paired as the throughput ratios are: on a machine whose speed drifts between rounds (a shared host),
    a ratio of two medians can pair a slow round of one with a fast round of the other.
    """
    ratios = [
        r["naive"]["seconds"] / r["replay"]["seconds"] for r in rounds if r["replay"] and r["replay"].get("seconds")
    ]
    return round(statistics.median(ratios), 2)


def run_startup(settings: Settings, events: int = 1_000_000, by: str = "") -> dict[str, Any]:
    """Replay speed, memory per key and log bytes per event, all from one seeded log.

    One log of ``events`` PUTs of distinct 16-byte keys with 100-byte values
    serves all three: replaying it is the start-up figure, the store it leaves
    holds ``events`` keys, and its size over the count is the log's cost.
    With ``by``, every record names that principal (as a server now writes them).
    """
    with tempfile.TemporaryDirectory(prefix="tuco-bench-startup-") as tmp:
        workdir = Path(tmp)
        seed = workdir / "seed" / "tuco.log"
        half = workdir / "half" / "tuco.log"  # half the keys: the heap's growth between the two is per key alone
        started = time.perf_counter()
        size = build_log(seed, events, 100, by)
        build_seconds = time.perf_counter() - started
        build_log(half, events // 2, 100, by)
        empty_rss, empty_heap = _empty_rss_kib(workdir)
        pure_empty_rss, pure_empty_heap = (
            _empty_rss_kib(workdir, pure_env(), "empty-pure") if settings.pure_twin else (0, 0)
        )
        rounds = []
        pure_rounds = []
        for i in range(settings.rounds):  # interleaved: each server replay, then the naive loop on the same file
            rounds.append(_replay_once(seed, workdir, i))
            rounds[-1]["naive"] = _naive_replay(seed)
            rounds[-1]["half_heap_kib"] = _replay_once(half, workdir, f"{i}-half")["heap_kib"]
            if settings.pure_twin:
                pure_rounds.append(_replay_once(seed, workdir, f"{i}-pure", pure_env()))
                pure_rounds[-1]["half_heap_kib"] = _replay_once(half, workdir, f"{i}-half-pure", pure_env())["heap_kib"]
    ready = statistics.median(r["ready_seconds"] for r in rounds)
    rss = statistics.median(r["rss_kib"] for r in rounds)
    heap = statistics.median(r["heap_kib"] for r in rounds)
    replay_seconds = [r["replay"]["seconds"] for r in rounds if r["replay"] and "seconds" in r["replay"]]
    result: dict[str, Any] = {
        "title": f"start-up replay and memory, {events:,} keys" + (f", each by {by}" if by else ""),
        "kind": "startup",
        "events": events,
        "log_bytes": size,
        "log_build_seconds": round(build_seconds, 2),
        "rounds": rounds,
        "ready_seconds": ready,
        "ready_events_per_second": round(events / ready),
        "empty_rss_kib": empty_rss,
        "rss_kib": rss,
        "rss_overhead_bytes_per_key": round((rss - empty_rss) * 1024 / events - KEY_VALUE_BYTES_1M, 1),
        # The heap alone (RssAnon): RSS also counts the pages of compiled code that replay touches for the first
        # time, a few MiB whatever the number of keys, which the pure build's empty server already holds as bytecode.
        "empty_heap_kib": empty_heap,
        "heap_kib": heap,
        "heap_overhead_bytes_per_key": round((heap - empty_heap) * 1024 / events - KEY_VALUE_BYTES_1M, 1),
        "heap_slope_bytes_per_key": heap_slope(rounds, events),
        "heap_slope_resolution_bytes": heap_resolution(rounds, events),
        "log_overhead_bytes_per_event": round(size / events - KEY_VALUE_BYTES_1M, 2),
    }
    if pure_rounds:
        pure_replay = [r["replay"]["seconds"] for r in pure_rounds if r["replay"] and "seconds" in r["replay"]]
        pure_rss = statistics.median(r["rss_kib"] for r in pure_rounds)
        pure_heap = statistics.median(r["heap_kib"] for r in pure_rounds)
        result["pure"] = {
            "rounds": pure_rounds,
            "replay_seconds": statistics.median(pure_replay) if pure_replay else None,
            "ready_seconds": statistics.median(r["ready_seconds"] for r in pure_rounds),
            "empty_rss_kib": pure_empty_rss,
            "rss_kib": pure_rss,
            "rss_overhead_bytes_per_key": round((pure_rss - pure_empty_rss) * 1024 / events - KEY_VALUE_BYTES_1M, 1),
            "empty_heap_kib": pure_empty_heap,
            "heap_kib": pure_heap,
            "heap_overhead_bytes_per_key": round((pure_heap - pure_empty_heap) * 1024 / events - KEY_VALUE_BYTES_1M, 1),
            "heap_slope_bytes_per_key": heap_slope(pure_rounds, events),
            "heap_slope_resolution_bytes": heap_resolution(pure_rounds, events),
        }
    naive_seconds = statistics.median(r["naive"]["seconds"] for r in rounds)
    result["naive_seconds"] = naive_seconds
    result["naive_events_per_second"] = round(events / naive_seconds)
    if replay_seconds:
        result["replay_seconds"] = statistics.median(replay_seconds)
        result["replay_events_per_second"] = round(events / result["replay_seconds"])
        result["replay_vs_naive"] = paired_replay_ratio(rounds)
        result["replay_vs_naive_of_medians"] = round(naive_seconds / result["replay_seconds"], 2)
    else:
        result["note"] = "the server logged no replay_finished line with a seconds field"
    return result
