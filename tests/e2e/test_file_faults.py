"""Kill-and-check over the file log's failure paths, on real ``tuco serve`` processes.

A real failed ``fdatasync`` (injected by ``strace``), the log file moved away or
deleted under a running server, and things at the log path that are not a log.
After each: every acknowledged write is there with its exact value after a
restart, and the served state equals the replayed state.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tests.needs import command as need_command

StartTuco = Callable[..., TucoProcess]


def strace_or_fail() -> str:
    """The strace binary; missing, it fails the test under CI=true and skips it elsewhere (scripts/test installs it)."""
    return need_command("strace", "scripts/test installs Debian's strace")


class TracedTuco(TucoProcess):
    """``tuco serve`` under strace, whose N-th ``fdatasync`` fails with EIO without reaching the disk."""

    def __init__(self, env: dict[str, str], *, cwd: Path, failing_sync: int) -> None:
        super().__init__(env, cwd=cwd)
        self.failing_sync = failing_sync

    def command(self) -> list[str]:
        inject = f"inject=fdatasync:error=EIO:when={self.failing_sync}"
        trace = [
            strace_or_fail(),
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-o",
            "/dev/null",
            "-e",
            "trace=fdatasync",
            "-e",
            inject,
        ]
        return [*trace, *super().command()]

    def kill(self) -> int:
        """SIGKILL the traced server itself (killing strace would leave it running, detached)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGKILL)
        return self.wait_exit(10.0)


def unique_writes(
    url: str, writers: int, until: Callable[[dict[str, int | bytes]], bool] = lambda outcome: False
) -> dict[str, int | bytes]:
    """Concurrent PUTs of fresh keys until one is refused (or ``until(outcome)``).

    Returns each key's value if it was acknowledged, else the status it got.
    """
    outcome: dict[str, int | bytes] = {}

    async def writer(number: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for counter in range(100_000):
                if until(outcome) or len(outcome) >= 5000:  # bounded, even if nothing ever fails
                    return
                key = f"w{number}-{counter}"
                value = f"{key}:".encode().ljust(64, b".")
                response = await http.put(f"/v1/key/{key}", content=value)
                outcome[key] = value if response.status_code == 201 else response.status_code
                if response.status_code != 201:
                    assert response.status_code == 503, response.text
                    assert response.json()["error"] == "log_failed", response.text
                    return

    async def main() -> None:
        await asyncio.gather(*(writer(n) for n in range(writers)))

    asyncio.run(main())
    return outcome


def served_state(server: TucoProcess, keys: list[str]) -> dict[str, bytes]:
    """What the server answers for each key now (absent keys left out)."""
    state: dict[str, bytes] = {}
    with server.client() as http:
        for key in keys:
            response = http.get(f"/v1/key/{key}")
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                state[key] = response.content
    return state


def check_restart(tuco: StartTuco, data: Path, outcome: dict[str, int | bytes], served: dict[str, bytes]) -> None:
    """After a restart: served state == replayed state, and every acknowledged write is there exactly."""
    restarted = tuco(data_dir=data)
    replayed = served_state(restarted, list(outcome))
    assert replayed == served
    acknowledged = {key: value for key, value in outcome.items() if isinstance(value, bytes)}
    assert {key: replayed.get(key) for key in acknowledged} == acknowledged
    assert restarted.terminate() == 0


FAILED = "the transaction log failed and takes no more writes; see the server's log"


def failure_detail(server: TucoProcess, body: dict[str, object]) -> str:
    """The answer says tuco's fixed words; return the detail the server logged once as log_failed."""
    assert (body["error"], body["message"]) == ("log_failed", FAILED)
    [event] = [event for event in server.events() if event["event"] == "log_failed"]
    return str(event["error"])


def wait_not_ready(server: TucoProcess, timeout: float = 30.0) -> dict[str, object]:
    """Poll /readyz until it answers 503; return its JSON."""
    deadline = time.monotonic() + timeout
    with server.client() as http:
        while time.monotonic() < deadline:
            response = http.get("/readyz")
            if response.status_code == 503:
                body: dict[str, object] = response.json()
                return body
            assert response.status_code == 200
            time.sleep(0.02)
    raise AssertionError("/readyz stayed 200")


@pytest.mark.parametrize("failing_sync", [1, 4, 9])
def test_a_real_failed_fdatasync_is_never_replayed(tmp_path: Path, tuco: StartTuco, failing_sync: int) -> None:
    """With the N-th fdatasync failing (EIO), the batch is refused and cut: a SIGKILL and restart serve the same."""
    data = tmp_path / "data"
    server = TracedTuco({"TUCO_DATA_DIR": str(data)}, cwd=tmp_path, failing_sync=failing_sync)
    try:
        server.start()
        outcome = unique_writes(server.url, 8)
        refused = [key for key, value in outcome.items() if value == 503]
        assert refused, "no write was refused"
        body = wait_not_ready(server)
        served = served_state(server, list(outcome))
        assert all(key not in served for key in refused)
        server.kill()
    finally:
        server.stop_quietly()
    check_restart(tuco, data, outcome, served)
    message = failure_detail(server, body)
    assert message.startswith(f"cannot sync {data / 'tuco.log'} (Input/output error): the failed batch, sequence")
    assert message.endswith("was cut from the file and will not be replayed")


def test_a_real_failed_fdatasync_in_everysec_mode_keeps_what_was_acknowledged(tmp_path: Path, tuco: StartTuco) -> None:
    """In everysec mode a failed timer fdatasync stops the log; what was acknowledged is served and replayed."""
    data = tmp_path / "data"
    server = TracedTuco({"TUCO_DATA_DIR": str(data), "TUCO_LOG_SYNC": "everysec"}, cwd=tmp_path, failing_sync=2)
    try:
        server.start()
        outcome = unique_writes(server.url, 4)
        body = wait_not_ready(server)
        served = served_state(server, list(outcome))
        server.kill()
    finally:
        server.stop_quietly()
    check_restart(tuco, data, outcome, served)
    message = failure_detail(server, body)
    assert message.startswith(f"cannot sync {data / 'tuco.log'} (Input/output error): the writes acknowledged")
    assert message.endswith("may not be on disk; a restart replays what the file still holds")


@pytest.mark.parametrize("round_", range(3))
def test_a_log_moved_away_mid_burst_keeps_exactly_the_acknowledged_writes(
    tmp_path: Path, tuco: StartTuco, round_: int
) -> None:
    """Renaming the log under writers: writes turn 503, a second server is refused, and the moved file is exact."""
    data = tmp_path / "data"
    server = tuco(data_dir=data)
    log, moved = data / "tuco.log", data / "moved.log"

    def until(outcome: dict[str, int | bytes]) -> bool:
        acknowledged = sum(isinstance(value, bytes) for value in outcome.values())
        if acknowledged >= 50 * (round_ + 1) and log.exists():
            os.rename(log, moved)
        return len(outcome) > 3000  # bounded even if the move went unnoticed

    outcome = unique_writes(server.url, 8, until)
    assert any(value == 503 for value in outcome.values())
    body = wait_not_ready(server)
    assert failure_detail(server, body).startswith(
        f"{log} no longer names the log file this process has open (removed or replaced): "
    )
    second = TucoProcess({"TUCO_DATA_DIR": str(data)}, cwd=tmp_path)
    second.proc = subprocess.Popen(
        [sys.executable, "-m", "tuco", "serve"], env=second.env, cwd=tmp_path, stdout=subprocess.PIPE
    )
    out, _ = second.proc.communicate(timeout=30)
    assert second.proc.returncode == 1
    assert f"{log} is locked by another tuco process (it holds {data})".encode() in out
    served = served_state(server, list(outcome))
    server.kill()
    os.replace(moved, log)
    check_restart(tuco, data, outcome, served)


def test_a_deleted_log_turns_an_idle_server_not_ready(tuco: StartTuco, tmp_path: Path) -> None:
    """Deleting the log of an idle server turns /readyz 503 with log_failed, and writes are refused."""
    data = tmp_path / "data"
    server = tuco(data_dir=data)
    with server.client() as http:
        assert http.put("/v1/key/a", content=b"1").status_code == 201
    (data / "tuco.log").unlink()
    body = wait_not_ready(server)
    assert failure_detail(server, body) == (
        f"{data / 'tuco.log'} no longer names the log file this process has open (removed or replaced): writes stopped"
    )
    with server.client() as http:
        refused = http.put("/v1/key/b", content=b"2")
        assert (refused.status_code, refused.json()["error"]) == (503, "log_failed")
        read = http.get("/v1/key/a")
        assert (read.status_code, read.content) == (200, b"1")
    assert server.terminate() == 0


def start_and_fail(tmp_path: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``tuco serve`` that must refuse to start; return its exit code and output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tuco", "serve"],
        env={**os.environ, "TUCO_PORT": "0", **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError("tuco serve hung:\n" + out.decode()) from None
    return process.returncode, out.decode()


def test_a_fifo_at_the_log_path_stops_start_up_at_once(tmp_path: Path) -> None:
    """A named pipe at the log path makes start-up and the log tools exit 1 naming it, instead of hanging."""
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "tuco.log")
    code, out = start_and_fail(tmp_path, {"TUCO_DATA_DIR": str(data)})
    assert code == 1
    message = f"{data / 'tuco.log'} is a FIFO (named pipe), not a regular file: refusing to use it as the log"
    assert message in out
    for command in ("verify", "dump", "repair", "compact"):
        tool = subprocess.run(
            [sys.executable, "-m", "tuco", "log", command, str(data / "tuco.log")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (tool.returncode, tool.stderr) == (1, f"tuco: {data / 'tuco.log'}: {message}\n"), command
