"""Elections under a pause: a leader stopped past its ttl learns it lost before it acts, and is replaced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.process import TucoProcess
from tuco.client import Client

StartTuco = Callable[..., TucoProcess]

ROOT = Path(__file__).resolve().parents[2]


def test_a_paused_leader_learns_it_lost_before_it_acts(tuco: StartTuco) -> None:
    """SIGSTOP the leader past its ttl; a follower takes over; on SIGCONT its first answer is ``lost``, not ``act``."""
    server = tuco()
    with subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.leader_worker", server.url, "el/paused", "old", "1"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as leader:
        _follow_the_pause(server, leader)


def _follow_the_pause(server: TucoProcess, leader: subprocess.Popen[str]) -> None:
    assert leader.stdin is not None and leader.stdout is not None
    try:
        first = leader.stdout.readline().split()
        assert first[0] == "leader"
        leader.stdin.write("now?\n")
        leader.stdin.flush()
        assert leader.stdout.readline() == "act\n"
        with Client(server.url) as client, client.session(ttl=5) as session:
            os.kill(leader.pid, signal.SIGSTOP)
            try:
                follower = session.election("el/paused")
                token = follower.campaign("new", timeout=30)  # only once the paused leader's lease ended
                assert token > int(first[1])
                leader.stdin.write("now?\n")  # waiting in the pipe: read the instant the leader runs again
                leader.stdin.flush()
                time.sleep(0.1)
            finally:
                os.kill(leader.pid, signal.SIGCONT)
            assert leader.stdout.readline() == "lost\n"
            current = follower.leader()
            assert current is not None and (current.value, current.revision) == (b"new", token)
    finally:
        leader.kill()
        leader.wait(10)
