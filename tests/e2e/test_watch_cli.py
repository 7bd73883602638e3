"""``tuco watch`` run as a user would: lines per change, resuming across a server restart, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]


class Lines:
    """A child's stdout lines, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def close(self) -> None:
        """Once the child has exited: read to the end of its stdout, then close it."""
        self._reader.join(10)
        assert self._process.stdout is not None
        self._process.stdout.close()

    def wait(self, count: int, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.lines)


def watch(url: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuco", "watch", *args],
        env={**os.environ, "TUCO_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Ctrl-C the client; its exit code and what it said on stderr."""
    process.send_signal(signal.SIGINT)
    code = process.wait(10)
    assert process.stderr is not None and process.stdout is not None
    errors = process.stderr.read().decode()
    process.stderr.close()
    time.sleep(0.1)  # the reader thread sees the end of stdout
    process.stdout.close()
    return code, errors


def test_tuco_watch_prints_each_change_once_across_a_server_restart(tuco: StartTuco, tmp_path: Path) -> None:
    """Lines per change; SIGTERM ends the stream, the client reconnects to the restarted server with Last-Event-ID."""
    port = str(free_port())
    server = tuco(TUCO_PORT=port)
    with server.client() as client:
        client.put("/v1/key/app%2Fa", content=b"one")
        client.put("/v1/key/other", content=b"x")
        client.put("/v1/key/app%2Fb", content=b"tab\there")
    watcher = watch(server.url, "app/", "--from", "1")
    lines = Lines(watcher)
    try:
        assert lines.wait(2) == ["1\tput\tapp/a\tone", "3\tput\tapp/b\ttab\\there"]
        assert server.terminate() == 0
        server = tuco(TUCO_PORT=port)
        with server.client() as client:
            client.delete("/v1/key/app%2Fa")
            client.put("/v1/key/app%2Fc", content=b"\xff")
        assert lines.wait(4) == [
            "1\tput\tapp/a\tone",
            "3\tput\tapp/b\ttab\\there",
            "4\tdelete\tapp/a",
            "5\tput\tapp/c\t\\xff",
        ]
        time.sleep(0.5)
        assert len(lines.lines) == 4  # nothing twice
    finally:
        code, errors = stop(watcher)
    assert code == 0
    assert "Traceback" not in errors


def test_tuco_watch_json_and_a_start_no_longer_retained_exits_5(tuco: StartTuco) -> None:
    """--json prints each event's data with its type; a start before the retained history exits 5 with a message."""
    server = tuco()
    with server.client() as client:
        client.put("/v1/key/k", content=b"v")
    watcher = watch(server.url, "--json", "--from", "1")
    lines = Lines(watcher)
    try:
        got = lines.wait(1)
    finally:
        assert stop(watcher)[0] == 0
    assert [json.loads(line) for line in got] == [
        {
            "revision": 1,
            "key": "k",
            "value": "dg==",
            "mod_revision": 1,
            "create_revision": 1,
            "version": 1,
            "type": "put",
        }
    ]
    assert server.terminate() == 0
    server = tuco()
    gone = subprocess.run(
        [sys.executable, "-m", "tuco", "watch", "--from", "1"],
        env={**os.environ, "TUCO_URL": server.url},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert gone.returncode == 5
    assert gone.stderr.decode() == (
        "tuco: 410 history_compacted: the changes after revision 0 are no longer retained; "
        "the oldest available is 1 (start again with --from)\n"
    )
    usage = subprocess.run(
        [sys.executable, "-m", "tuco", "watch", "--from", "zero"], capture_output=True, timeout=30, check=False
    )
    assert (usage.returncode, usage.stderr) == (2, b"tuco: --from takes a revision (a positive number), not 'zero'\n")
