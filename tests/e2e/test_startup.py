"""Start-up of real ``tuco serve`` processes: how each failure is reported, and health during a long replay.

Each failure must give its documented exit code, exactly one ``tuco: ...``
line on stderr naming the cause and the setting or path, one ``start_failed``
JSON line, and, for everything found before binding, no listening socket. The
port given to tuco is held by a listener of the test: a process that tried to
bind before failing would report "cannot listen" instead of the real cause.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.e2e.process import TucoProcess
from tuco.core.codec import encode_header, encode_record
from tuco.core.events import EventType

StartTuco = Callable[..., TucoProcess]

PROBE_DEADLINE = 1.0
"""The issue's bound on a health answer during replay (what an orchestrator's probe allows), not a speed target."""
REPLAY_EVENTS = 2_000_000
"""Enough that replay takes seconds on any machine, so the probes land inside it."""


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port on which the test itself listens, so that tuco binding it first would fail."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tuco", "serve"],
        env={**os.environ, "TUCO_DATA_DIR": str(tmp_path / "data"), "TUCO_LOG_LEVEL": "info", **env},
        capture_output=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def _events(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.decode().splitlines() if line.startswith("{")]


def _assert_failed(result: subprocess.CompletedProcess[bytes], exit_code: int, error: str) -> str:
    """The exit code, one stderr line, one start_failed line agreeing with it; returns the stderr line."""
    assert result.returncode == exit_code, result
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr
    [failed] = [event for event in _events(result) if event["event"] == "start_failed"]
    assert (failed["error"], f"tuco: {failed['message']}", failed["exit_code"]) == (error, lines[0], exit_code)
    assert "Traceback" not in result.stdout.decode() + result.stderr.decode()
    return lines[0]


def _assert_never_listened(result: subprocess.CompletedProcess[bytes]) -> None:
    assert [event for event in _events(result) if event["event"] == "listening"] == []


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate chain and its key for 127.0.0.1."""
    issued = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return cert, key


def test_a_data_dir_that_is_a_file_is_a_configuration_error(tmp_path: Path, held_port: int) -> None:
    """TUCO_DATA_DIR naming a file: exit 2, 'not a directory' with the path, nothing bound."""
    data = tmp_path / "data"
    data.write_bytes(b"not a directory")
    result = _serve(tmp_path, {"TUCO_PORT": str(held_port)})
    line = _assert_failed(result, 2, "invalid_configuration")
    assert line == f"tuco: invalid configuration: TUCO_DATA_DIR: not a directory: {data}"
    _assert_never_listened(result)


def test_a_data_dir_under_a_file_is_a_configuration_error(tmp_path: Path, held_port: int) -> None:
    """TUCO_DATA_DIR below a file: exit 2, naming the file that is in the way."""
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"")
    result = _serve(tmp_path, {"TUCO_PORT": str(held_port), "TUCO_DATA_DIR": str(blocker / "data")})
    line = _assert_failed(result, 2, "invalid_configuration")
    assert line == f"tuco: invalid configuration: TUCO_DATA_DIR: not a directory: {blocker}"
    _assert_never_listened(result)


@pytest.mark.parametrize("which", ["cert", "key"])
def test_a_missing_tls_file_is_named_by_setting_and_path(
    tmp_path: Path, held_port: int, certificates: tuple[Path, Path], which: str
) -> None:
    """A missing certificate or key: exit 2, the setting and the path (not 'None'), nothing bound."""
    cert, key = certificates
    missing = tmp_path / "missing.pem"
    env = {
        "TUCO_PORT": str(held_port),
        "TUCO_TLS_CERT_FILE": str(missing if which == "cert" else cert),
        "TUCO_TLS_KEY_FILE": str(missing if which == "key" else key),
    }
    result = _serve(tmp_path, env)
    line = _assert_failed(result, 2, "invalid_configuration")
    assert line == f"tuco: invalid configuration: TUCO_TLS_{which.upper()}_FILE: no such file: {missing}"
    _assert_never_listened(result)


def test_an_unreadable_tls_file_is_named_by_setting_and_path(
    tmp_path: Path, held_port: int, certificates: tuple[Path, Path]
) -> None:
    """A key path that cannot be read (a directory; the tests run as root, so modes do not stop reads): exit 2."""
    cert, _ = certificates
    directory = tmp_path / "keydir"
    directory.mkdir()
    env = {"TUCO_PORT": str(held_port), "TUCO_TLS_CERT_FILE": str(cert), "TUCO_TLS_KEY_FILE": str(directory)}
    result = _serve(tmp_path, env)
    line = _assert_failed(result, 2, "invalid_configuration")
    assert line == f"tuco: invalid configuration: TUCO_TLS_KEY_FILE: cannot read {directory}: Is a directory"
    _assert_never_listened(result)


def test_a_key_of_another_certificate_is_named_with_both_paths(
    tmp_path: Path, held_port: int, certificates: tuple[Path, Path]
) -> None:
    """A key that does not belong to the certificate: exit 2, both settings and paths and the TLS library's reason."""
    cert, _ = certificates
    other = tmp_path / "other.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other))
    env = {"TUCO_PORT": str(held_port), "TUCO_TLS_CERT_FILE": str(cert), "TUCO_TLS_KEY_FILE": str(other)}
    result = _serve(tmp_path, env)
    line = _assert_failed(result, 2, "invalid_configuration")
    assert line == (
        f"tuco: invalid configuration: TUCO_TLS_CERT_FILE {cert} with TUCO_TLS_KEY_FILE {other}: KEY_VALUES_MISMATCH"
    )
    _assert_never_listened(result)


def test_a_locked_log_fails_before_the_port_is_bound(tuco: StartTuco, tmp_path: Path, held_port: int) -> None:
    """A second process on a data directory in use: exit 1 naming the locked file, and it never bound its port."""
    first = tuco()
    result = _serve(tmp_path, {"TUCO_PORT": str(held_port)})
    line = _assert_failed(result, 1, "log_failed")
    data = tmp_path / "data"
    assert line == f"tuco: {data / 'tuco.log'} is locked by another tuco process (it holds {data})"
    _assert_never_listened(result)
    with first.client() as http:
        assert http.get("/healthz").status_code == 200


def test_a_port_in_use_is_a_runtime_failure_after_the_log_opened(tmp_path: Path, held_port: int) -> None:
    """Binding a port someone else listens on: exit 1, the address and the OS's reason."""
    result = _serve(tmp_path, {"TUCO_PORT": str(held_port)})
    line = _assert_failed(result, 1, "cannot_listen")
    assert line == f"tuco: cannot listen on 127.0.0.1:{held_port}: Address already in use"
    assert (tmp_path / "data" / "tuco.log").exists()  # the log was opened first


def test_a_corrupt_log_is_a_runtime_failure(tmp_path: Path) -> None:
    """A damaged record followed by valid ones: exit 1 and one line naming the file and the repair command."""
    path = tmp_path / "data" / "tuco.log"
    path.parent.mkdir()
    records = [encode_record(sequence, EventType.PUT, f"k{sequence}", b"value") for sequence in range(1, 4)]
    damaged = bytearray(records[1])
    damaged[-1] ^= 0xFF
    path.write_bytes(encode_header() + records[0] + bytes(damaged) + records[2])
    result = _serve(tmp_path, {"TUCO_PORT": "0"})
    line = _assert_failed(result, 1, "log_corrupt")
    assert line.startswith(f"tuco: {path}: ")
    assert line.endswith(f"refusing to start. Inspect with 'tuco log verify {path}', cut with 'tuco log repair {path}'")


def test_an_unreachable_database_is_a_runtime_failure_before_binding(tmp_path: Path, held_port: int) -> None:
    """The postgres backend with no database listening: exit 1 after the connect time-out, and nothing bound."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    env = {
        "TUCO_PORT": str(held_port),
        "TUCO_LOG_BACKEND": "postgres",
        "TUCO_DATABASE_URL": f"postgresql://tuco:hunter2@127.0.0.1:{dead}/tuco",
        "TUCO_DATABASE_CONNECT_TIMEOUT_SECONDS": "1",
    }
    result = _serve(tmp_path, env)
    line = _assert_failed(result, 1, "log_failed")
    assert line == (
        f"tuco: cannot reach the database postgresql://tuco:***@127.0.0.1:{dead}/tuco "
        "(gave up after 1.0 s; the cause is logged as database_unreachable)"
    )
    assert [event["event"] for event in _events(result)].count("database_unreachable") >= 2
    assert "hunter2" not in result.stdout.decode() + result.stderr.decode()
    _assert_never_listened(result)


def _write_large_log(path: Path, events: int) -> None:
    """A valid log of ``events`` small PUTs, encoded straight to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        file.write(encode_header())
        for start in range(1, events + 1, 100_000):
            end = min(start + 100_000, events + 1)
            file.write(
                b"".join(encode_record(seq, EventType.PUT, f"k{seq % 50_000}", b"v") for seq in range(start, end))
            )


def _probe(port: int, path: str) -> tuple[int, dict[str, Any], float]:
    """GET ``path`` on a new connection, as an orchestrator's probe does; (status, JSON body, seconds taken)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=PROBE_DEADLINE) as sock:
        sock.settimeout(PROBE_DEADLINE)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body), time.monotonic() - started


@pytest.mark.xdist_group("heavy")  # its 1 s probe deadline is the product's; 3 workers beside it missed it once
def test_health_answers_throughout_a_long_replay(tuco: StartTuco, tmp_path: Path) -> None:
    """While millions of events replay, /healthz answers 200 and /readyz 503 'starting', each within 1 s."""
    _write_large_log(tmp_path / "data" / "tuco.log", REPLAY_EVENTS)
    server = tuco(wait_ready=False)
    during = 0
    while not any(event.get("event") == "replay_finished" for event in server.events()):
        alive = _probe(server.port, "/healthz")
        ready = _probe(server.port, "/readyz")
        if ready[1]["phase"] != "starting":
            # Replay ended between the probes (the phase turns just before replay_finished is logged).
            assert (ready[0], ready[1]["phase"], ready[1]["ready"]) == (200, "serving", True)
            break
        if any(event.get("event") == "replay_finished" for event in server.events()):
            break  # replay may have ended between the probes: only probes inside it count
        assert alive[:2] == (200, {"status": "alive"})
        assert (ready[0], ready[1]["phase"], ready[1]["error"]) == (503, "starting", "starting")
        assert max(alive[2], ready[2]) < PROBE_DEADLINE
        during += 1
    assert during >= 2, "replay ended before the probes could see it: make the log larger"
    server.wait_for("ready")
    status, body, _ = _probe(server.port, "/readyz")
    assert (status, body["ready"], body["log"]["last_sequence"]) == (200, True, REPLAY_EVENTS)
