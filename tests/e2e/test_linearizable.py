"""Fault runs on three PostgreSQL replicas, clients on each: the recorded history is linearizable.

The faults: every tuco connection terminated by the database (``pg_terminate_backend``) mid-burst, a replica
frozen (SIGSTOP) and thawed, a replica SIGKILLed and started again. Failovers are in ``test_pg_failover.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess
from tests.fix_db import eventually, fetch
from tests.fix_ha import Burst, check_database
from tests.lincheck import check_history, check_stale_reads

StartTuco = Callable[..., TucoProcess]

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("heavy")]  # bursts: one heavy test at a time

STALENESS_BOUND = 5.0
TERMINATE = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'tuco'"""


def _replica(tuco: StartTuco, dsn: str, name: str) -> TucoProcess:
    return tuco(
        TUCO_LOG_BACKEND="postgres",
        TUCO_DATABASE_URL=dsn,
        TUCO_DATA_DIR=f"/nonexistent/{name}",
        TUCO_PORT=str(free_port()),  # the same port after a restart: its clients keep their URL
        TUCO_DATABASE_WRITE_TIMEOUT_SECONDS="30",
        TUCO_POLL_INTERVAL_SECONDS="0.1",
    )


def test_histories_under_terminated_backends_frozen_and_killed_replicas_are_linearizable(
    tuco: StartTuco, pg_dsn: str
) -> None:
    """12 clients on 3 replicas through the faults: nothing acknowledged lost, consistent operations linearizable."""
    replicas = [_replica(tuco, pg_dsn, name) for name in ("a", "b", "c")]
    burst = Burst([r.url for r in replicas], writers=12, keys=8, seed=21)
    terminated: list[int] = []

    async def flowing(writes: int = 100) -> None:
        before = burst.acknowledged_writes()
        while burst.acknowledged_writes() < before + writes:
            await asyncio.sleep(0.02)

    async def faults() -> None:
        for _ in range(3):
            await flowing()
            terminated.append((await fetch(pg_dsn, TERMINATE))[0][0])
        await flowing()
        os.kill(replicas[1].pid, signal.SIGSTOP)
        await asyncio.sleep(1.5)
        os.kill(replicas[1].pid, signal.SIGCONT)
        await flowing()
        replicas[2].kill()
        await flowing(50)
        await asyncio.to_thread(replicas[2].start)
        await flowing()
        burst.stop.set()

    async def main() -> None:
        await asyncio.gather(burst.run(), faults())

    asyncio.run(main())
    assert burst.history.errors == []
    assert all(count >= 3 for count in terminated), terminated  # each replica's pool and follower were cut
    state = asyncio.run(check_database(pg_dsn, burst))
    head = asyncio.run(fetch(pg_dsn, "SELECT sequence FROM tuco_head"))[0][0]
    for replica in replicas:
        with replica.client() as http:
            eventually(lambda h=http: h.get("/readyz").json()["log"]["last_sequence"] == head, what="converged")  # type: ignore[misc]
            for n in range(burst.keys):
                response = http.get(f"/v1/key/k{n}")
                assert (response.status_code, response.content) == (
                    (200, state[f"k{n}"]) if f"k{n}" in state else (404, response.content)
                )
    ops = burst.history.resolved()
    verdict = check_history(ops)
    assert verdict.ok, f"not linearizable on {verdict.key}: {verdict.explanation}"
    assert check_stale_reads(ops, STALENESS_BOUND) == []
