"""The built wheel installed without the server extra, into an empty virtualenv: the client and CLI work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.test_slim import PROBE, SERVER_PACKAGES
from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Without the suite's PYTHONPATH (the compiled build's tree, whose dist-info would tell the new venv's pip
    that tuco is installed already), and building the pure wheel: the client runs no compiled module, and the
    compiled wheel is tested by tests/test_build_hook.py and the image."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env["TUCO_BUILD"] = "pure"
    return subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
def test_pip_install_tuco_without_the_server_extra(tuco: StartTuco, tmp_path: Path) -> None:
    """Wheel and client.lock in a new venv: no server package; the CLI talks to a server; serve says what is missing."""
    wheels = tmp_path / "wheels"
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT)
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("tuco-*.whl")
    venv = tmp_path / "slim"
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    locked = _run(*pip, "--require-hashes", "-r", ROOT / "requirements" / "client.lock")
    assert locked.returncode == 0, locked.stderr
    installed = _run(*pip, "--no-deps", wheel)
    assert installed.returncode == 0, installed.stderr
    listed = _run(venv / "bin" / "python", "-m", "pip", "list", "--format", "json")
    names = {item["name"].lower().replace("-", "_") for item in json.loads(listed.stdout)}
    assert {"tuco", "httpx", "click"} <= names
    assert names.isdisjoint(SERVER_PACKAGES)
    probe = _run(venv / "bin" / "python", "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    assert not any(name.startswith(("tuco.core", "tuco.http", "tuco.log")) for name in json.loads(probe.stdout))

    server = tuco()
    cli = venv / "bin" / "tuco"
    put = _run(cli, "--url", server.url, "put", "slim", "works")
    assert (put.returncode, put.stderr) == (0, "")
    got = _run(cli, "get", "slim", "--url", server.url)
    assert (got.returncode, got.stdout) == (0, "works")
    locked_run = _run(cli, "--url", server.url, "lock", "locks/slim", "--", "sh", "-c", "echo $TUCO_FENCING_TOKEN")
    assert locked_run.returncode == 0 and int(locked_run.stdout) > int(put.stdout)
    health = _run(cli, "health", "--url", server.url)
    assert health.returncode == 0, health.stderr
    serve = _run(cli, "serve")
    assert serve.returncode == 2
    assert "pip install 'tuco[server]'" in serve.stderr
    dump = _run(cli, "log", "dump", "x")
    assert dump.returncode == 2 and "tuco[server]" in dump.stderr
    saved = _run(cli, "snapshot", "save", str(tmp_path / "x.snap"), "--url", server.url)
    assert saved.returncode == 2 and "tuco[server]" in saved.stderr
    export = _run(cli, "export", "--url", server.url)  # export and import are the client's: they need no extra
    assert export.returncode == 0, export.stderr
    assert [json.loads(line)["key"] for line in export.stdout.splitlines()] == ["slim"]
