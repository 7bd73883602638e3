"""A full disk under the log: writes get 503, reads go on, readiness turns false, nothing false is acknowledged."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.process import TucoProcess
from tests.needs import command, unavailable
from tuco.core.codec import encode_record
from tuco.core.events import EventType

StartTuco = Callable[..., TucoProcess]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs mounted for the test (needs root, as on our machines and CI)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mount = command("mount", "Debian's mount package")
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if result.returncode != 0:
        unavailable(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_turns_writes_into_503_and_keeps_reads(tuco: StartTuco, tiny_disk: Path) -> None:
    """Fill the disk: the failing PUT gets 503, earlier values still read, /readyz is 503, restart keeps them."""
    server = tuco(data_dir=tiny_disk)
    value = os.urandom(4096)
    stored: list[str] = []
    with server.client() as http:
        for number in range(100):
            response = http.put(f"/v1/key/k{number}", content=value)
            if response.status_code != 201:
                break
            stored.append(f"k{number}")
        else:
            pytest.fail("a 64 KiB disk took 400 KiB of values")
        assert response.status_code == 503
        assert response.json()["error"] == "log_failed"
        failed_key = f"k{len(stored)}"
        assert 5 <= len(stored) < 16  # 4 KiB values on a 64 KiB disk
        assert http.get(f"/v1/key/{failed_key}").status_code == 404
        for key in stored:
            got = http.get(f"/v1/key/{key}")
            assert (got.status_code, got.content) == (200, value)
        later = http.put("/v1/key/later", content=b"small")
        assert (later.status_code, later.json()["error"]) == (503, "log_failed")
        delete = http.delete(f"/v1/key/{stored[0]}")
        assert (delete.status_code, delete.json()["error"]) == (503, "log_failed")
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["error"] == "log_failed"
        assert http.get("/healthz").status_code == 200
    failures = [e for e in server.events() if e.get("event") == "log_failed"]
    assert len(failures) == 1, "the failure is logged once, with its cause"
    log = tiny_disk / "tuco.log"
    sequence = len(stored) + 1
    assert failures[0]["error"] == (
        f"cannot write {log} (No space left on device): the failed batch, sequence {sequence}, was cut from the "
        "file and will not be replayed"
    )
    assert server.terminate() == 0
    restarted = tuco(data_dir=tiny_disk)
    with restarted.client() as http:
        for key in stored:
            got = http.get(f"/v1/key/{key}")
            assert (got.status_code, got.content) == (200, value)
        assert http.get(f"/v1/key/{failed_key}").status_code == 404
    assert [e for e in restarted.events() if e.get("event") == "log_tail_truncated"] == []


def hostile_value(next_sequence: int, size: int) -> bytes:
    """A value made of well-formed log records numbered like the next events, as any client could send."""
    planted = b"".join(encode_record(next_sequence + n, EventType.PUT, "planted", b"evil") for n in range(4))
    return (planted * (size // len(planted) + 1))[:size]


@pytest.mark.parametrize("size", [3000, 4113, 9001])
def test_full_disk_with_values_holding_records_restarts_to_the_served_state(
    tuco: StartTuco, tiny_disk: Path, size: int
) -> None:
    """Fill the disk with values that contain log records, SIGKILL: the restart serves exactly what was served."""
    server = tuco(data_dir=tiny_disk)
    outcome: dict[str, bytes | int] = {}
    with server.client() as http:
        for number in range(100):
            key, value = f"k{number}", hostile_value(number + 2, size)
            response = http.put(f"/v1/key/{key}", content=value)
            outcome[key] = value if response.status_code == 201 else response.status_code
            if response.status_code != 201:
                assert (response.status_code, response.json()["error"]) == (503, "log_failed")
                break
        else:
            pytest.fail("the 64 KiB disk never filled")
        served = {}
        for key in outcome:
            got = http.get(f"/v1/key/{key}")
            assert got.status_code in (200, 404)
            if got.status_code == 200:
                served[key] = got.content
    acknowledged = {key: value for key, value in outcome.items() if isinstance(value, bytes)}
    assert served == acknowledged
    assert server.kill() == -9
    restarted = tuco(data_dir=tiny_disk)
    with restarted.client() as http:
        replayed = {}
        for key in outcome:
            got = http.get(f"/v1/key/{key}")
            if got.status_code == 200:
                replayed[key] = got.content
        assert replayed == served
    assert [e for e in restarted.events() if e.get("event") in ("log_tail_truncated", "start_failed")] == []
