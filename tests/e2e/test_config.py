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
