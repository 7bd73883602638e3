"""The suite itself: ``scripts/test`` (and so ``.ci/run``) fails, never skips, when a part of the machine is missing;
every PostgreSQL test is marked so; the fast tier (``scripts/fast``) runs nothing that needs the machine's parts."""

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
    "promtool": "tests/e2e/test_observability.py::test_the_alert_rules_pass_promtool_check_rules",
}
REASONS = {
    "PostgreSQL": "PostgreSQL test server unreachable",
    "strace": "strace is not installed",
    "chromium": "chromium is not installed",
    "tmpfs": "mount is not installed",
    "failover rig": "no PostgreSQL binaries in",
    "promtool": "promtool is not installed",
}
_REFUSE = '#!/bin/sh\necho "$0: not in this test\'s PATH" >&2\nexit 100\n'


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _machine_without_the_parts(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH lacks strace, chromium, mount and promtool (apt-get and sudo refuse to install them),
    whose test database URL names a closed port, and whose failover rig has no PostgreSQL binaries."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "sudo"):
        (bin_dir / name).write_text(_REFUSE)
        (bin_dir / name).chmod(0o755)
    missing = {"strace", "chromium", "mount", "promtool"}
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
    """``test id -> PASSED/FAILED/SKIPPED/ERROR`` from pytest's verbose (``-v``) progress lines, run alone
    (``id OUTCOME``) or on xdist workers (``[gw0] [ 50%] OUTCOME id``)."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)\b", line)
        if match:
            found[match.group(1)] = match.group(2)
        match = re.match(r"\[gw\d+\] \[ *\d+%\] (PASSED|FAILED|SKIPPED|ERROR) (\S+::\S+)", line)
        if match:
            found[match.group(2)] = match.group(1)
    return found


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_test_script_fails_when_a_part_is_missing_whatever_ci_says(tmp_path: Path) -> None:
    """scripts/test run with CI=false on a machine without PostgreSQL, strace, chromium, mount, promtool, the rig's
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


def _collected(command: list[str]) -> set[str]:
    """The test ids ``command`` (a pytest run given ``--collect-only -q``) collects; it must exit 0."""
    result = subprocess.run(
        [*command, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if "::" in line}


@pytest.fixture(scope="module")
def fast_tier() -> set[str]:
    """The ids of the tests ``scripts/fast`` runs (collected without workers)."""
    return _collected(["scripts/fast", "-n", "0"])


@pytest.mark.timeout(300)
def test_the_fast_tier_runs_no_test_marked_postgres_or_container(fast_tier: set[str]) -> None:
    """No test ``scripts/fast`` selects is marked postgres or container: it needs neither a database nor an engine."""
    needing = _collected([sys.executable, "-m", "pytest", "-m", "postgres or container"])
    assert needing, "no test is marked postgres or container: the markers are gone"
    assert len(fast_tier) > 500, sorted(fast_tier)  # the tier is real: core, http, client, log...
    assert not fast_tier & needing, sorted(fast_tier & needing)


@pytest.mark.timeout(300)
def test_every_e2e_and_container_module_is_outside_the_fast_tier(fast_tier: set[str]) -> None:
    """No test of ``tests/e2e`` (real ``tuco serve`` processes) nor ``tests/container`` is in the fast tier."""
    modules = sorted(
        str(path.relative_to(ROOT))
        for folder in ("e2e", "container")
        for path in (ROOT / "tests" / folder).glob("test_*.py")
    )
    assert modules
    inside = {module for module in modules if any(test.startswith(f"{module}::") for test in fast_tier)}
    assert not inside, inside


@pytest.mark.timeout(300)
def test_outside_the_postgres_mark_no_test_asks_for_the_database() -> None:
    """Collecting ``-m "not postgres"`` succeeds (the conftest refuses unmarked PostgreSQL tests) and keeps no
    parametrized PostgreSQL case (the backend/frontend fixtures' postgres params carry the mark)."""
    kept = _collected([sys.executable, "-m", "pytest", "-m", "not postgres"])
    assert kept
    cases = {test: test.partition("[")[2].removesuffix("]").split("-") for test in kept}
    assert not {test for test, parts in cases.items() if "postgres" in parts}, kept  # [postgres], [native-postgres]


_UNMARKED = """
import pytest

def test_asks_for_the_database(pg_dsn):
    pass
"""
_UNMARKED_DYNAMIC = """
import pytest

@pytest.fixture(params=["file", "postgres"])
def backend(request):
    return request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""

def test_on_each_backend(backend):
    pass
"""


def _run_with_our_fixtures(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    """pytest on a module made of ``source``, with this suite's conftest (its fixtures and collection check)."""
    (tmp_path / "test_probe.py").write_text(source)
    env = {**os.environ, "TUCO_TEST_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-rA",
            "--rootdir",
            tmp_path,
            tmp_path / "test_probe.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_test_asking_for_the_database_without_the_mark_stops_collection(tmp_path: Path) -> None:
    """A test whose fixtures include pg_dsn but which is not marked postgres: the run stops at collection."""
    result = _run_with_our_fixtures(tmp_path, _UNMARKED)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "must be marked postgres" in output and "test_asks_for_the_database" in output, output


def test_a_parameter_reaching_the_database_without_the_mark_fails_its_test(tmp_path: Path) -> None:
    """A parameter that asks for pg_dsn through getfixturevalue (hidden from collection) without the mark fails
    that case, before any database is reached; the other case passes."""
    result = _run_with_our_fixtures(tmp_path, _UNMARKED_DYNAMIC)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "1 passed" in output and "is not marked postgres" in output, output
    assert "PostgreSQL test server unreachable" not in output, output


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_scripts_runs_collect_every_test_once() -> None:
    """scripts/test's two grouped runs (the engine's lane, the others) split the grouped tests: none in both, none
    in neither, and every file sent beside the engine exists and holds grouped tests. (The first run takes the
    rest by its marker, ``not xdist_group``.)"""
    script = (ROOT / "scripts" / "test").read_text()
    match = re.search(r"^\s*beside_engine=\(([^)]*)\)", script, re.MULTILINE)
    assert match is not None, "scripts/test names no files beside the engine"
    beside = match.group(1).split()
    assert beside and all((ROOT / path).is_file() for path in beside), beside
    pytest_ = [sys.executable, "-m", "pytest"]
    grouped = _collected([*pytest_, "-m", "xdist_group"])
    engine = _collected([*pytest_, "-m", "xdist_group", "tests/container", *beside])
    others = _collected([*pytest_, "-m", "xdist_group and not container", *(f"--ignore={path}" for path in beside)])
    assert {path.split("::")[0] for path in engine} >= set(beside)  # each file sent there holds grouped tests
    assert not engine & others
    assert engine | others == grouped
