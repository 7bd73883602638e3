"""A replica frozen in the middle of its writes (SIGSTOP: a GC pause, a partitioned VM) stalls no other replica."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess
from tests.fix_db import eventually, fetch, last_value_per_key

pytestmark = pytest.mark.postgres

StartTuco = Callable[..., TucoProcess]

WRITE_BOUND_SECONDS = 2.0  # the issue's acceptance bound for the other replicas' writes
FREEZE_SECONDS = 3.0  # longer than the bound, so a stalled write shows
FREEZES = 2


def _replica(tuco: StartTuco, dsn: str, name: str) -> TucoProcess:
    return tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=dsn, TUCO_DATA_DIR=f"/nonexistent/{name}")


def _read_all(url: str, keys: list[str], *, consistent: bool) -> dict[str, bytes]:
    state = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        for key in keys:
            response = http.get(key_path(key), params={"consistent": "true"} if consistent else None)
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                state[key] = response.content
    return state


def _last_sequence(url: str) -> int:
    with httpx.Client(base_url=url, timeout=30) as http:
        return int(http.get("/readyz").json()["log"]["last_sequence"])


def test_a_replica_frozen_mid_burst_does_not_stall_the_others(tuco: StartTuco, pg_dsn: str) -> None:
    """With one of three replicas SIGSTOPped mid-burst, the others' writes each answer 201 within 2 s; all converge."""
    frozen, *others = (_replica(tuco, pg_dsn, name) for name in ("frozen", "b", "c"))
    acknowledged: dict[str, bytes] = {}
    latencies: list[tuple[float, float]] = []  # (start, seconds) of each write on the other replicas
    windows: list[tuple[float, float]] = []  # when the replica was frozen

    async def burst(worker: int, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=frozen.url, timeout=120) as http:
            counter = 0
            while not stop.is_set():
                counter += 1
                key, value = f"frozen{worker}-{counter}", f"{worker}:{counter}".encode()
                response = await http.put(key_path(key), content=value)
                if response.status_code == 201:
                    acknowledged[key] = value
                else:
                    assert (response.status_code, response.json()["error"]) == (503, "log_unavailable")

    async def measured(replica: TucoProcess, worker: int, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=replica.url, timeout=120) as http:
            counter = 0
            while not stop.is_set():
                counter += 1
                key, value = f"other{replica.port}-{worker}-{counter}", f"{counter}".encode()
                started = time.monotonic()
                response = await http.put(key_path(key), content=value)
                latencies.append((started, time.monotonic() - started))
                assert response.status_code == 201, response.text
                acknowledged[key] = value

    async def freezer(stop: asyncio.Event) -> None:
        rng = random.Random(14)
        try:
            for _ in range(FREEZES):
                before = len(acknowledged)
                while len(acknowledged) < before + 100:  # mid-burst: the frozen replica is writing
                    await asyncio.sleep(0.01)
                start = await _freeze_at_the_worst_moment(frozen.pid, pg_dsn, rng)
                await asyncio.sleep(FREEZE_SECONDS)
                windows.append((start, time.monotonic()))
                os.kill(frozen.pid, signal.SIGCONT)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
            stop.set()

    async def scenario() -> None:
        stop = asyncio.Event()
        await asyncio.gather(
            freezer(stop),
            *(burst(n, stop) for n in range(16)),
            *(measured(replica, n, stop) for replica in others for n in range(1)),
        )

    asyncio.run(scenario())

    assert len(windows) == FREEZES
    slowest = max(seconds for _, seconds in latencies)
    assert slowest < WRITE_BOUND_SECONDS, f"a write on a running replica took {slowest:.2f} s"
    for start, end in windows:
        during = [seconds for began, seconds in latencies if start <= began < end - WRITE_BOUND_SECONDS]
        assert len(during) >= 2, f"the other replicas wrote only {len(during)} times while one was frozen"

    expected = asyncio.run(last_value_per_key(pg_dsn))
    assert {key: expected.get(key) for key in acknowledged} == acknowledged
    head = asyncio.run(_head(pg_dsn))
    keys = sorted(expected)
    for replica in (frozen, *others):

        def at_head(url: str = replica.url) -> bool:
            return _last_sequence(url) == head

        eventually(at_head, what=f"{replica.url} at the head")
        assert _read_all(replica.url, keys, consistent=False) == expected
    assert _read_all(frozen.url, keys, consistent=True) == expected


async def _freeze_at_the_worst_moment(pid: int, dsn: str, rng: random.Random) -> float:
    """SIGSTOP ``pid``, preferably while it holds a transaction open on the head row; return when it froze.

    A replica only ever frozen between two writes would prove nothing, so up to
    15 short freezes look for one that leaves a tuco backend idle inside the same
    transaction, holding a lock on ``tuco_head``, for 0.2 s (running replicas
    never stay there that long); the last try is kept either way.
    """
    for _ in range(15):
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        first = {tuple(row) for row in await fetch(dsn, _HOLDING_THE_HEAD)}
        await asyncio.sleep(0.2)
        if first & {tuple(row) for row in await fetch(dsn, _HOLDING_THE_HEAD)}:
            break  # the same transaction stayed open: the frozen replica's
        os.kill(pid, signal.SIGCONT)
    else:
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
    return frozen_at


_HOLDING_THE_HEAD = """SELECT a.pid, a.xact_start FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
    WHERE a.datname = current_database() AND a.application_name = 'tuco'
      AND a.state LIKE 'idle in transaction%' AND l.granted AND l.relation = 'tuco_head'::regclass"""


async def _head(dsn: str) -> int:
    return int((await fetch(dsn, "SELECT sequence FROM tuco_head"))[0][0])
