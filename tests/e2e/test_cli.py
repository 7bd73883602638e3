"""The client commands and the log tools, run as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.process import TucoProcess
from tuco.core.codec import HEADER_SIZE


def without_moments(dump: str) -> list[str]:
    """The dump's lines without their ``at=`` fields (Unix ms, different on every run)."""
    return [re.sub(r"\tat=\d+", "", line) for line in dump.splitlines()]


StartTuco = Callable[..., TucoProcess]


def _tuco(*args: str, url: str = "", stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TUCO_URL": url} if url else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "tuco", *args], input=stdin, env=env, capture_output=True, timeout=30, check=False
    )


def test_put_get_delete_with_exit_codes(tuco: StartTuco) -> None:
    """put/get/delete round-trip exact bytes; get of a missing key exits 1, an unreachable server 3."""
    server = tuco()
    assert _tuco("put", "greeting key", "hello", url=server.url).returncode == 0
    got = _tuco("get", "greeting key", url=server.url)
    assert (got.returncode, got.stdout) == (0, b"hello")
    binary = bytes(range(256))
    assert _tuco("put", "bin/key", "-", url=server.url, stdin=binary).returncode == 0
    assert _tuco("get", "bin/key", url=server.url).stdout == binary
    assert _tuco("delete", "greeting key", url=server.url).returncode == 0
    missing = _tuco("get", "greeting key", url=server.url)
    assert missing.returncode == 1
    assert missing.stderr.decode().startswith("tuco: 404 no_such_key")
    unreachable = _tuco("get", "k", url="http://127.0.0.1:9")
    assert unreachable.returncode == 3
    assert "Traceback" not in unreachable.stderr.decode()


def test_log_dump_verify_repair(tuco: StartTuco, tmp_path: Path) -> None:
    """dump prints each event, verify flags a damaged middle record, repair keeps the prefix."""
    server = tuco()
    with server.client() as http:
        for number in range(5):
            assert http.put(f"/v1/key/k{number}", content=f"v{number}".encode()).status_code == 201
        assert http.delete("/v1/key/k0").status_code == 200
    assert server.terminate() == 0
    log = tmp_path / "data" / "tuco.log"
    dump = _tuco("log", "dump", str(log))
    assert dump.returncode == 0
    assert without_moments(dump.stdout.decode()) == [  # every change is recorded with who made it (issue 24)
        "1\tPUT\t'k0'\tb'v0'\tcreate_revision=1\tversion=1\tby=anonymous",
        "2\tPUT\t'k1'\tb'v1'\tcreate_revision=2\tversion=1\tby=anonymous",
        "3\tPUT\t'k2'\tb'v2'\tcreate_revision=3\tversion=1\tby=anonymous",
        "4\tPUT\t'k3'\tb'v3'\tcreate_revision=4\tversion=1\tby=anonymous",
        "5\tPUT\t'k4'\tb'v4'\tcreate_revision=5\tversion=1\tby=anonymous",
        "6\tDELETE\t'k0'\tb''\tby=anonymous\treason=deleted",
    ]
    ok = _tuco("log", "verify", str(log))
    origin = 13 + 9 + len("anonymous")  # the attributed record's head, moment and reason, and who
    size = HEADER_SIZE + 5 * (21 + 2 + 2 + origin) + 21 + 2 + origin
    assert (ok.returncode, ok.stdout.decode()) == (0, f"{log}: 6 events, last sequence 6, {size} bytes\nok\n")
    data = bytearray(log.read_bytes())
    record = 21 + 2 + 2 + origin  # overhead + key + value + origin
    third = HEADER_SIZE + 2 * record
    data[third + 10] ^= 0xFF
    log.write_bytes(bytes(data))
    bad = _tuco("log", "verify", str(log))
    assert bad.returncode == 1
    assert f"corrupt: checksum mismatch at offset {third}" in bad.stdout.decode()
    refused = TucoProcess({"TUCO_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path)
    refused.proc = subprocess.Popen(
        [sys.executable, "-m", "tuco", "serve"],
        env={**refused.env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = refused.proc.communicate(timeout=30)
    assert refused.proc.returncode == 1
    assert b"tuco log repair" in out
    repaired = _tuco("log", "repair", str(log))
    assert (repaired.returncode, repaired.stdout.decode()) == (
        0,
        f"{log}: kept 2 events (last sequence 2); dropped {len(data) - third} bytes from offset {third} "
        f"(checksum mismatch at offset {third}, followed by a valid record at offset {third + record})\n",
    )
    restarted = tuco()
    with restarted.client() as http:
        for key, value in [("k0", b"v0"), ("k1", b"v1")]:
            got = http.get(f"/v1/key/{key}")
            assert (got.status_code, got.content) == (200, value)
        assert http.get("/v1/key/k2").status_code == 404


def test_lease_list_prints_each_live_lease(tuco: StartTuco) -> None:
    """``tuco lease list`` prints id, ttl, seconds left and key count per lease; ``--output json`` the same as JSON."""
    server = tuco()
    first = _tuco("lease", "grant", "60s", url=server.url)
    second = _tuco("lease", "grant", "5m", url=server.url)
    assert (first.returncode, second.returncode) == (0, 0), (first.stderr, second.stderr)
    ids = [int(first.stdout), int(second.stdout)]
    assert _tuco("put", "held", "x", "--lease", str(ids[0]), url=server.url).returncode == 0
    listed = _tuco("lease", "list", url=server.url)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.decode().splitlines()]
    assert [(int(row[0]), row[1], row[3]) for row in rows] == [(ids[0], "60", "1"), (ids[1], "300", "0")]
    assert all(0 < float(row[2]) <= float(row[1]) for row in rows)
    shown = _tuco("lease", "list", "--output", "json", url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert [item["id"] for item in json.loads(shown.stdout)] == ids
