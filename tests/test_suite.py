"""The suite itself: ``scripts/test`` (and so ``.ci/run``) fails, never skips, when a part of the machine is missing."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One test per part, each needing only that part (and failing at once without it).
NEEDS = {
    "PostgreSQL": "tests/log/test_pg_schema.py::test_a_newer_schema_is_refused",
    "strace": "tests/e2e/test_file_faults.py::test_a_real_failed_fdatasync_in_everysec_mode_keeps_what_was_acknowledged",  # noqa: E501
    "chromium": "tests/e2e/test_browser_watch.py::test_a_browser_eventsource_receives_exact_events_across_origins",
    "tmpfs": "tests/e2e/test_failing_disk.py::test_full_disk_turns_writes_into_503_and_keeps_reads",
    "failover rig": "tests/e2e/test_pg_failover.py::test_a_node_turned_read_only_is_not_the_primary",
}
REASONS = {
    "PostgreSQL": "PostgreSQL test server unreachable",
    "strace": "strace is not installed",
    "chromium": "chromium is not installed",
    "tmpfs": "mount is not installed",
    "failover rig": "no PostgreSQL binaries in",
}
_REFUSE = '#!/bin/sh\necho "$0: not in this test\'s PATH" >&2\nexit 100\n'


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _machine_without_the_parts(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH lacks strace, chromium and mount (apt-get and sudo refuse to install them),
    whose test database URL names a closed port, and whose failover rig has no PostgreSQL binaries."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "sudo"):
        (bin_dir / name).write_text(_REFUSE)
        (bin_dir / name).chmod(0o755)
    missing = {"strace", "chromium", "mount"}
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            link = bin_dir / entry.name
            if entry.name not in missing and not link.exists() and not link.is_symlink():
                link.symlink_to(entry)
    return {
        **os.environ,
        "PATH": str(bin_dir),
        "CI": "false",  # what a caller may have set: the script must not care
        "TUCO_TEST_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres",
        "TUCO_TEST_PG_BIN": str(tmp_path / "no-postgresql"),
    }


def _outcomes(output: str) -> dict[str, str]:
    """``test id -> PASSED/FAILED/SKIPPED/ERROR`` from pytest's verbose (``-v``) progress lines."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)\b", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_test_script_fails_when_a_part_is_missing_whatever_ci_says(tmp_path: Path) -> None:
    """scripts/test run with CI=false on a machine without PostgreSQL, strace, chromium, mount and the rig's
    binaries: each test needing one fails naming it, none skips, and the script exits 1."""
    result = subprocess.run(
        ["scripts/test", "-v", "-rA", "-p", "no:cacheprovider", *NEEDS.values()],
        cwd=ROOT,
        env=_machine_without_the_parts(tmp_path),
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    outcomes = _outcomes(output)
    assert sorted(outcomes) == sorted(NEEDS.values()), output
    assert set(outcomes.values()) <= {"FAILED", "ERROR"}, output  # ERROR: a fixture failed, as a missing part does
    for part, reason in REASONS.items():
        assert reason in output, f"{part}: {output}"
    assert "CI=true: a missing part fails the run" in output


@pytest.mark.timeout(300)
def test_outside_the_script_the_same_tests_skip_with_the_reason(tmp_path: Path) -> None:
    """The same machine under a plain pytest (CI unset) skips those tests with each reason: the script is what
    makes them fail."""
    env = _machine_without_the_parts(tmp_path)
    del env["CI"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-rA", "-p", "no:cacheprovider", *NEEDS.values()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _outcomes(output) == {test: "SKIPPED" for test in NEEDS.values()}, output
    for reason in REASONS.values():
        assert reason in output, output
