"""Mutual exclusion under faults: eight lock contenders, holders killed and paused past their ttl, servers restarted.

Every contender does its work on a fenced resource (``tests/e2e/fence.py``) that refuses
tokens lower than the highest it has seen. The lock is right when a holder that was never
paused is never refused: then no two live holders ever believed they held it at once,
and a paused holder either learned it lost before acting or was refused by the fence.
The runs are bounded by completed critical sections, not by seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.fence import Fence, check
from tests.e2e.process import TucoProcess
from tests.fix_ha import HaCluster

StartTuco = Callable[..., TucoProcess]

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 8
TTL = 3.0
STEPS = 3
ROUNDS = 6
ENOUGH = 1_000_000  # until the rounds of faults are over; then a few more sections and the workers stop


class Contenders:
    """The worker processes, respawned when killed; which pids were ever paused."""

    def __init__(self, urls: str, fence: Fence) -> None:
        self.urls = urls
        self.fence = fence
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.paused: set[int] = set()
        self.pauses = 0

    def spawn(self) -> None:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.lock_worker",
                self.urls,
                "locks/fenced",
                self.fence.url,
                str(TTL),
                str(STEPS),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.procs[proc.pid] = proc

    def kill(self, pid: int) -> None:
        self.procs[pid].kill()
        self.procs.pop(pid).wait(10)
        self.spawn()

    def pause(self, pid: int, seconds: float) -> None:
        self.paused.add(pid)
        self.pauses += 1
        os.kill(pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(pid, signal.SIGCONT)

    def close(self, patience: float) -> list[int]:
        """Wait for the workers to stop by themselves (``patience`` seconds each), then kill the rest."""
        codes = []
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(patience))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait(10))
        return codes


def _wait_more(fence: Fence, at_least: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while fence.completed() < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {fence.completed()} sections completed, wanted {at_least}")
        time.sleep(0.05)


def _holder(fence: Fence, contenders: Contenders) -> int:
    deadline = time.monotonic() + 60
    while True:
        pid = fence.current_holder()
        if pid in contenders.procs:
            return pid
        if time.monotonic() > deadline:
            raise AssertionError("no live holder")
        time.sleep(0.02)


@pytest.fixture
def fence() -> Iterator[Fence]:
    """The fenced resource, serving until the test ends."""
    with Fence(STEPS, ENOUGH) as resource:
        yield resource


def _run(fence: Fence, urls: str, server_fault: Callable[[], object]) -> None:
    contenders = Contenders(urls, fence)
    for _ in range(WORKERS):
        contenders.spawn()
    finished = False
    try:
        for round_ in range(ROUNDS):
            _wait_more(fence, fence.completed() + 5)
            holder = _holder(fence, contenders)
            if round_ % 3 == 0:
                contenders.pause(holder, TTL * 2.5)
            elif round_ % 3 == 1:
                contenders.kill(holder)
            else:
                server_fault()
        fence.target = fence.completed() + 5
        _wait_more(fence, fence.target)
        finished = True
    finally:
        codes = contenders.close(60 if finished else 0)
    assert codes == [0] * WORKERS
    with fence.guard:
        log = list(fence.log)
    check(log, contenders.paused)
    assert fence.completed() == fence.target >= 5 * ROUNDS + 5
    assert len({work.token for work in log if work.accepted}) >= fence.target
    assert contenders.pauses == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.postgres
@pytest.mark.xdist_group("heavy")
def test_mutual_exclusion_on_two_postgres_replicas_under_kills_pauses_and_restarts(
    tuco: StartTuco, pg_dsn: str, fence: Fence
) -> None:
    """8 contenders on two replicas; holders paused past the ttl and killed, a replica killed and restarted."""
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn}
    replicas = [tuco(TUCO_PORT=str(free_port()), TUCO_DATA_DIR=f"/nonexistent/{n}", **env) for n in range(2)]
    turn = [0]

    def restart_a_replica() -> None:
        replica = replicas[turn[0] % 2]
        turn[0] += 1
        replica.kill()
        replica.start()

    _run(fence, ",".join(replica.url for replica in replicas), restart_a_replica)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.xdist_group("heavy")
def test_mutual_exclusion_on_the_file_log_under_kills_pauses_and_server_restarts(
    tuco: StartTuco, fence: Fence, tmp_path: Path
) -> None:
    """8 contenders on one file-log server; holders paused and killed, the server SIGKILLed and restarted."""
    server = tuco(TUCO_PORT=str(free_port()))

    def restart() -> None:
        server.kill()
        server.start()

    _run(fence, server.url, restart)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.postgres
@pytest.mark.xdist_group("heavy")
def test_mutual_exclusion_on_two_replicas_while_the_database_fails_over(
    tuco: StartTuco, ha_cluster: HaCluster, fence: Fence
) -> None:
    """8 contenders on two replicas of a primary + standby: holders paused and killed, the primary replaced twice."""
    url = ha_cluster.create_database("tuco")
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": url}
    replicas = [tuco(TUCO_DATA_DIR=f"/nonexistent/{n}", **env) for n in range(2)]
    _run(fence, ",".join(replica.url for replica in replicas), ha_cluster.failover)
    assert ha_cluster.failovers == 2
