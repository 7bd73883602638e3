"""Starting, probing and stopping the server under test (tuco, the reference, or either ASGI app under uvicorn).

Every server's output goes to a file in bench/out/ so a failed scenario can be
diagnosed after the fact; a server that dies raises :class:`ServerDiedError`
with the tail of that file rather than leaving the harness waiting.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "BENCH_DIR",
    "OUT_DIR",
    "ServerDiedError",
    "ServerProcess",
    "free_port",
    "probe_status",
    "reference_command",
    "tuco_command",
    "uvicorn_command",
]

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


class ServerDiedError(RuntimeError):
    """The server exited (or never became ready) while the benchmark needed it."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tuco_command() -> list[str]:
    """How to start tuco with the interpreter that runs the harness (the repo's venv)."""
    return [sys.executable, "-m", "tuco", "serve"]


def reference_command(port: int) -> list[str]:
    """How to start the minimal reference server on ``port``."""
    return [sys.executable, str(BENCH_DIR / "reference_server.py"), "--port", str(port)]


def uvicorn_command(app: str, port: int, *, app_dir: Path | None = None) -> list[str]:
    """How to serve the ASGI app ``app`` (``module:attribute``) with uvicorn on ``port``.

    httptools and uvloop, as tuco's own server uses; one worker in the server's
    own process (so its CPU is the pid's); no access log, warnings only.
    ``app_dir`` goes first on the server's module path (bench/ for the bare app).
    """
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(["--app-dir", str(app_dir)] if app_dir is not None else []),
        app,
    ]


def probe_status(port: int, path: str = "/readyz", *, tls: bool = False, timeout: float = 1.0) -> int | None:
    """Status code of one ``GET path``, or None if nothing answered.

    A bare socket rather than an HTTP client: it is polled every few
    milliseconds while timing start-up, and must cost next to nothing.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            sock: socket.socket = raw
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


class ServerProcess:
    """One server process with its output captured to ``log_path``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], port: int, *, tls: bool = False) -> None:
        self.name = name
        self.port = port
        self.tls = tls
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = OUT_DIR / f"server-{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=BENCH_DIR.parent,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        """The last lines the server wrote, for error messages."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        """Raise :class:`ServerDiedError` if the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise ServerDiedError(f"{self.name} exited with code {code}; log {self.log_path}:\n{self.tail()}")

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.005) -> float:
        """Block until ``GET /readyz`` answers 200; return seconds since spawn."""
        deadline = self.started_at + timeout
        while time.perf_counter() < deadline:
            if probe_status(self.port, tls=self.tls) == 200:
                return time.perf_counter() - self.started_at
            self.check_alive()
            time.sleep(interval)
        self.stop()
        raise ServerDiedError(f"{self.name} not ready after {timeout:.0f} s; log {self.log_path}:\n{self.tail()}")

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON lines the server logged so far (other lines are skipped)."""
        self._log.flush()
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, and return the exit code (SIGKILL if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()
