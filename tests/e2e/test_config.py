"""Configuration errors are one line and exit code 2; the start-up line shows the effective settings."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({"TUCO_PORT": "70000"}, [], "TUCO_PORT"),
        ({"TUCO_LOG_SYNC": "sometimes"}, [], "TUCO_LOG_SYNC"),
        ({"TUCO_MAX_VALUE_BYTES": "-1"}, [], "TUCO_MAX_VALUE_BYTES"),
        ({}, ["--port", "nope"], "TUCO_PORT"),
    ],
)
def test_invalid_configuration_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], flags: list[str], expected: str
) -> None:
    """A bad variable or flag stops start-up with exit 2 and a single line naming the setting."""
    result = subprocess.run(
        [sys.executable, "-m", "tuco", "serve", *flags],
        env={**os.environ, "TUCO_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tuco: invalid configuration: ") and expected in lines[0]


def test_startup_logs_config_with_secrets_redacted_and_replay_stats(tuco: StartTuco) -> None:
    """The first line carries the effective configuration without the database password; replay is reported."""
    server = tuco(TUCO_DATABASE_URL="postgresql://tuco:hunter2@db.example:5432/tuco")
    starting = server.wait_for("starting")
    assert starting["config"]["database_url"] == "postgresql://tuco:***@db.example:5432/tuco"
    assert starting["config"]["host"] == "127.0.0.1"
    assert "hunter2" not in server.output()
    replay = server.wait_for("replay_finished")
    assert replay["events"] == 0 and replay["keys"] == 0
    assert {"seconds", "events_per_second"} <= set(replay)


def test_flags_override_environment(tuco: StartTuco) -> None:
    """`tuco serve --max-value-bytes 20` wins over TUCO_MAX_VALUE_BYTES=10."""
    server = tuco(args=["--max-value-bytes", "20"], TUCO_MAX_VALUE_BYTES="10")
    with server.client() as http:
        assert http.put("/v1/key/k", content=b"x" * 20).status_code == 201
        too_big = http.put("/v1/key/k", content=b"x" * 21)
        assert too_big.status_code == 413
        assert too_big.json()["error"] == "value_too_large"


def test_a_misspelled_variable_is_a_warning_naming_the_setting_meant(tuco: StartTuco) -> None:
    """TUCO_PROT=9 starts (on the default port rule) and logs one unknown_setting warning naming TUCO_PORT."""
    server = tuco(TUCO_PROT="9", TUCO_LOG_LEVEL="INFO")
    warning = server.wait_for("unknown_setting")
    assert (warning["level"], warning["variable"], warning["nearest"]) == ("warning", "TUCO_PROT", "TUCO_PORT")
    assert warning["message"] == "TUCO_PROT is not a setting; did you mean TUCO_PORT?"
    assert [line["variable"] for line in server.events() if line.get("event") == "unknown_setting"] == ["TUCO_PROT"]


@pytest.mark.postgres
def test_the_database_url_can_come_from_a_file_so_its_password_is_in_no_environment(
    tuco: StartTuco, pg_dsn: str, tmp_path: Path
) -> None:
    """TUCO_DATABASE_URL_FILE: the server connects with the file's URL; the password is neither in the process's
    environment nor in its output (shown as ***)."""
    password = "file-only-" + os.urandom(6).hex()  # trust auth on the test server: any password logs in
    scheme, rest = pg_dsn.split("://", 1)
    user, at, host = rest.partition("@")
    url = f"{scheme}://{user.split(':')[0]}:{password}@{host}" if at else pg_dsn
    secret = tmp_path / "database-url"
    secret.write_text(url + "\n")
    server = tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL_FILE=str(secret))
    with server.client() as http:
        assert http.put("/v1/key/k", content=b"through the file's URL").status_code == 201
    environ = Path(f"/proc/{server.pid}/environ").read_bytes()
    assert password.encode() not in environ and b"TUCO_DATABASE_URL_FILE=" in environ
    assert server.wait_for("starting")["config"]["database_url"].endswith("***@" + host)
    assert password not in server.output()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TUCO_DATABASE_URL_FILE": "/nonexistent/url"}, "TUCO_DATABASE_URL_FILE: cannot read /nonexistent/url"),
        (
            {"TUCO_DATABASE_URL_FILE": "/dev/null", "TUCO_DATABASE_URL": "postgresql://a@b/c"},
            "set TUCO_DATABASE_URL or TUCO_DATABASE_URL_FILE, not both",
        ),
        ({"TUCO_DATABASE_URL_FILE": "/dev/null"}, "TUCO_DATABASE_URL_FILE: /dev/null is empty"),
    ],
)
def test_a_database_url_file_that_cannot_serve_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    """A missing, empty or doubled URL file stops start-up with one line naming it."""
    result = subprocess.run(
        [sys.executable, "-m", "tuco", "serve"],
        env={**os.environ, "TUCO_DATA_DIR": str(tmp_path), "TUCO_LOG_BACKEND": "postgres", **env},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
