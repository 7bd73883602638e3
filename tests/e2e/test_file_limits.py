"""Request limits never decide what a stored record is: real restarts with changed limits, and the real log tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess
from tuco.core.codec import encode_record
from tuco.core.events import EventType

StartTuco = Callable[..., TucoProcess]


def tuco_log(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuco", "log", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_lowering_and_raising_limits_across_restarts_never_changes_the_stored_state(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """Records written under large limits are replayed and served whole after the limits are lowered and raised."""
    data = tmp_path / "data"
    log = data / "tuco.log"
    long_key = "k" * 3000
    stored = {
        "big middle": os.urandom(200_000),
        long_key: b"under a long key",
        "small": b"1",
        "big tail": os.urandom(250_000),
    }
    server = tuco(data_dir=data, TUCO_MAX_VALUE_BYTES="300000", TUCO_MAX_KEY_BYTES="4096")
    with server.client() as http:
        for key, value in stored.items():
            assert http.put(key_path(key), content=value).status_code == 201
    assert server.terminate() == 0
    content = log.read_bytes()

    for max_key, max_value in [("100", "1000"), ("65536", "1073741824"), ("1", "1"), ("4096", "300000")]:
        server = tuco(data_dir=data, TUCO_MAX_VALUE_BYTES=max_value, TUCO_MAX_KEY_BYTES=max_key)
        finished = server.wait_for("replay_finished")
        assert (finished["events"], finished["keys"]) == (4, 4), (max_key, max_value)
        with server.client() as http:
            for key, value in stored.items():
                if len(key) <= int(max_key):
                    got = http.get(key_path(key))
                    assert (got.status_code, got.content) == (200, value), (key[:20], max_key, max_value)
        assert [e["event"] for e in server.events() if e.get("level") in ("warning", "error")] == []
        assert server.terminate() == 0
        assert log.read_bytes() == content
        verify = tuco_log("verify", str(log))
        assert (verify.returncode, verify.stdout) == (
            0,
            f"{log}: 4 events, last sequence 4, {len(content)} bytes\nok\n",
        )


def test_verify_repair_and_the_server_agree_on_a_torn_tail_holding_records(tuco: StartTuco, tmp_path: Path) -> None:
    """A torn record whose value holds whole records: verify calls it a torn tail, repair and start-up cut it alike."""
    data = tmp_path / "data"
    log = data / "tuco.log"
    server = tuco(data_dir=data)
    with server.client() as http:
        assert http.put("/v1/key/a", content=b"1").status_code == 201
        assert http.put("/v1/key/b", content=b"2").status_code == 201
    assert server.terminate() == 0
    whole = log.read_bytes()
    planted = encode_record(3, EventType.PUT, "planted", b"evil") + encode_record(4, EventType.DELETE, "a")
    torn = encode_record(3, EventType.PUT, "victim", b"x" + planted * 10)[:-7]
    log.write_bytes(whole + torn)
    copy = tmp_path / "copy.log"
    shutil.copy(log, copy)

    verify = tuco_log("verify", str(log))
    assert verify.returncode == 1
    assert verify.stdout == (
        f"{log}: 2 events, last sequence 2, {len(whole) + len(torn)} bytes\n"
        f"torn tail: incomplete record; {len(torn)} bytes after offset {len(whole)}\n"
    )
    repair = tuco_log("repair", str(copy))
    assert (repair.returncode, repair.stdout) == (
        0,
        f"{copy}: kept 2 events (last sequence 2); dropped {len(torn)} bytes from offset {len(whole)} "
        "(incomplete record)\n",
    )
    assert copy.read_bytes() == whole

    restarted = tuco(data_dir=data)
    cut = restarted.wait_for("log_tail_truncated")
    assert (cut["dropped_bytes"], cut["offset"], cut["reason"]) == (len(torn), len(whole), "incomplete record")
    with restarted.client() as http:
        assert http.get("/v1/key/a").content == b"1"
        assert http.get("/v1/key/b").content == b"2"
        assert http.get("/v1/key/planted").status_code == 404
    assert restarted.terminate() == 0
    assert log.read_bytes() == whole


def test_log_tools_refuse_a_log_whose_server_runs(tuco: StartTuco, tmp_path: Path) -> None:
    """While a server holds the data directory, repair and compact exit 1 saying so, and change nothing."""
    data = tmp_path / "data"
    log = data / "tuco.log"
    server = tuco(data_dir=data)
    with server.client() as http:
        assert http.put("/v1/key/a", content=b"1").status_code == 201
    before = log.read_bytes()
    for command in ("repair", "compact"):
        result = tuco_log(command, str(log))
        assert (result.returncode, result.stderr) == (
            1,
            f"tuco: {log}: {log} is locked by another tuco process (it holds {data})\n",
        )
    assert log.read_bytes() == before
    assert server.terminate() == 0
