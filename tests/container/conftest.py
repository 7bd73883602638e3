"""A Docker engine, the stand-in base images and the tuco image, made once for the container tests.

``scripts/engine start`` uses the engine DOCKER_HOST names if one answers, else installs Debian's docker.io
(as root) and starts a private one that ``scripts/engine stop`` removes once the last test of this package
is done (the fixtures are package-scoped);
``scripts/standins`` builds from Debian packages the official images no registry gives us here, and
``scripts/build-image`` builds the Dockerfile as CI does. Only tests that ask for an engine start one. Where
none can be had they fail under ``CI=true`` (as ``scripts/test`` sets) and skip otherwise.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.container import recipes
from tests.container.docker import Docker
from tests.needs import unavailable

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "tuco:test"
TIMINGS: dict[str, float] = {}  # what the container stage took, step by step, for the summary


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"no Docker engine: {reason}")


@pytest.fixture(scope="package")
def engine() -> Iterator[Docker]:
    """The engine for the container tests (started and removed here unless DOCKER_HOST already names one)."""
    if os.geteuid() != 0 and subprocess.run(["docker", "version"], capture_output=True).returncode != 0:
        _unavailable("not root, so scripts/engine cannot install or start dockerd")
    started = time.monotonic()
    try:
        result = subprocess.run([ROOT / "scripts" / "engine", "start"], capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        _unavailable(str(exc))
    if result.returncode != 0:
        _unavailable(result.stderr.strip() or "scripts/engine start failed")
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    docker = Docker(values["DOCKER_HOST"], TIMINGS)
    docker.timings["engine"] = time.monotonic() - started
    try:
        yield docker
    finally:
        stopped = time.monotonic()
        subprocess.run([ROOT / "scripts" / "engine", "stop", values.get("ENGINE_DIR", "")], timeout=300, check=False)
        docker.timings["engine stop"] = time.monotonic() - stopped
        docker.timings["container stage in all"] = time.monotonic() - started


@pytest.fixture(scope="package")
def standins(engine: Docker) -> Docker:
    """The engine with python:3.11-slim, postgres:15 and haproxy:2.6 present (built from Debian if missing)."""
    started = time.monotonic()
    result = subprocess.run(
        [ROOT / "scripts" / "standins"], env=engine.env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    engine.timings["stand-ins"] = time.monotonic() - started
    return engine


@pytest.fixture(scope="package")
def image(standins: Docker) -> str:
    """The tag of the image the Dockerfile builds (with this machine's pip settings, as CI builds it)."""
    started = time.monotonic()
    script, _ = shlex.split(recipes.BUILD)  # the README's command, with the test's tag
    result = subprocess.run(
        [ROOT / script, IMAGE, "--quiet"],
        env=standins.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    standins.timings["image build"] = time.monotonic() - started
    return IMAGE


@pytest.fixture
def docker(standins: Docker, image: str) -> Iterator[Docker]:
    """The engine for one test, the image built: what the test makes is removed afterwards."""
    del image
    docker = standins.scoped()
    yield docker
    docker.clean_up()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Container tests get 15 minutes: the first one's time includes installing the engine and building the images."""
    for item in items:
        if item.get_closest_marker("container") is not None:
            item.add_marker(pytest.mark.timeout(900))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line with the time the container stage took (engine, stand-ins, image build, all of it)."""
    if TIMINGS:
        shown = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in TIMINGS.items())
        terminalreporter.write_line(f"container stage: {shown}")
