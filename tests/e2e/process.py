"""Start, stop and kill real ``tuco serve`` processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests import build

STARTUP_TIMEOUT = 30.0


class TucoProcess:
    """One ``python -m tuco serve`` child on a free port, its stdout collected line by line."""

    def __init__(self, env: Mapping[str, str], *, cwd: Path, args: Sequence[str] = ()) -> None:
        self.args = list(args)
        self.env = {**os.environ, "TUCO_PORT": "0", "TUCO_LOG_LEVEL": "info", **env}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self.port = 0
        self.scheme = "https" if "TUCO_TLS_CERT_FILE" in self.env else "http"
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        """The command line that starts the server (a subclass may run it under a tracer)."""
        return [sys.executable, "-m", "tuco", "serve", *self.args]

    def start(self, *, wait_ready: bool = True) -> TucoProcess:
        """Spawn the server and wait for its listening line (and readiness, by default)."""
        self.lines = []
        self.proc = subprocess.Popen(
            self.command(),
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        listening = self.wait_for("listening")
        self.port = int(listening["port"])
        # Every server a test starts runs the build under test (a child that lost PYTHONPATH would run pure Python).
        assert listening["build"] == build.EXPECTED, f"the server runs the {listening['build']} build:\n{self.output()}"
        if wait_ready:
            self.wait_for("ready")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines printed so far."""
        parsed = []
        for line in list(self.lines):
            try:
                parsed.append(json.loads(line))
            except ValueError:
                continue
        return parsed

    def wait_for(self, event: str, timeout: float = STARTUP_TIMEOUT) -> dict[str, Any]:
        """Return the first log line with this ``event``; fail with the output if the process dies first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.events():
                if item.get("event") == event:
                    return item
            assert self.proc is not None
            if self.proc.poll() is not None:
                time.sleep(0.1)
                raise AssertionError(f"tuco exited with {self.proc.returncode} before {event!r}:\n" + self.output())
            time.sleep(0.02)
        raise AssertionError(f"no {event!r} line within {timeout}s:\n" + self.output())

    def output(self) -> str:
        return "\n".join(self.lines)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, return the exit code."""
        return self.signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: nothing gets to flush."""
        return self.signal(signal.SIGKILL, 10.0)

    def signal(self, signum: int, timeout: float) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        elif self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.wait_exit()
