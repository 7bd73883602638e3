"""Fixtures that run the real server: ``tuco serve`` (native) and ``uvicorn tuco.asgi:app``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.process import TucoProcess


@pytest.fixture
def tuco(tmp_path: Path) -> Iterator[Callable[..., TucoProcess]]:
    """A factory of started ``tuco serve`` processes on a fresh data directory; all are stopped afterwards."""
    started: list[TucoProcess] = []

    def start(
        wait_ready: bool = True, data_dir: Path | None = None, args: Sequence[str] = (), **env: str
    ) -> TucoProcess:
        full_env = {"TUCO_DATA_DIR": str(data_dir or tmp_path / "data"), **env}
        process = TucoProcess(full_env, cwd=tmp_path, args=args)
        started.append(process)
        return process.start(wait_ready=wait_ready)

    yield start
    for process in started:
        process.stop_quietly()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UvicornProcess:
    """``uvicorn --factory tuco.asgi:create_app`` on a free port: the ASGI front end over real sockets."""

    def __init__(self, data_dir: Path, cwd: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.cwd = cwd
        self.start()

    def start(self) -> None:
        """Spawn uvicorn (again, after a stop or kill, on the same port and data) and wait until it accepts."""
        env = {"TUCO_DATA_DIR": str(self.data_dir), "TUCO_LOG_LEVEL": "warning"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tuco.asgi:create_app",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--timeout-keep-alive",
                "1",
            ],
            env={**os.environ, **env},
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError("uvicorn exited during start-up") from None
                time.sleep(0.05)
        raise AssertionError("uvicorn did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM and wait: uvicorn finishes in-flight requests, then the lifespan closes the log."""
        self.proc.terminate()
        self.proc.wait(30)

    def kill(self) -> None:
        """SIGKILL: nothing gets to flush."""
        self.proc.kill()
        self.proc.wait(30)


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment selecting each log backend (postgres on a fresh database): run a test on both."""
    if request.param == "file":
        return {}
    return {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": request.getfixturevalue("pg_dsn")}


@pytest.fixture(params=["native", "asgi", pytest.param("native-postgres", marks=pytest.mark.postgres)])
def frontend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(name, base URL)`` of a running server: the shared HTTP suite runs on each front end and backend."""
    if request.param.startswith("native"):
        env = {
            "TUCO_DATA_DIR": str(tmp_path / "data"),
            "TUCO_KEEPALIVE_TIMEOUT_SECONDS": "1",
            "TUCO_REQUEST_TIMEOUT_SECONDS": "1",
        }
        if request.param == "native-postgres":
            env.update(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=request.getfixturevalue("pg_dsn"))
        process = TucoProcess(env, cwd=tmp_path)
        process.start()
        try:
            yield request.param, process.url
        finally:
            process.stop_quietly()
    else:
        server = UvicornProcess(tmp_path / "data", tmp_path)
        try:
            yield "asgi", server.url
        finally:
            server.stop()
