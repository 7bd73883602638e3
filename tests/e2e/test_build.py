"""Which build runs says itself: ``tuco --version``, the ``listening`` log line and ``/readyz`` (for admins).

The suite runs twice over (tests/build.py): scripts/test on the compiled build, scripts/fast on the pure one; each
session refuses to start on the other build, and each server a test starts must log the expected one.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests import build
from tests.e2e.process import TucoProcess
from tests.e2e.test_auth import ADMIN, secured
from tuco import __version__


def test_the_cli_the_log_and_readyz_name_the_build(tuco: Callable[..., TucoProcess]) -> None:
    """The three say the version and the build under test, and ``--version`` the Python and the CPU too."""
    shown = subprocess.run([sys.executable, "-m", "tuco", "--version"], capture_output=True, text=True, timeout=60)
    assert (shown.returncode, shown.stderr) == (0, "")
    python, machine = platform.python_version(), platform.machine()
    assert shown.stdout == f"tuco {__version__} ({build.EXPECTED} build, Python {python}, {machine})\n"
    server = tuco()
    listening = server.wait_for("listening")
    assert (listening["version"], listening["build"]) == (__version__, build.EXPECTED)
    ready = httpx.get(f"{server.url}/readyz").json()
    assert (ready["version"], ready["build"]) == (__version__, build.EXPECTED)


def test_an_anonymous_client_learns_no_version_or_build(tuco: Callable[..., TucoProcess], tmp_path: Path) -> None:
    """With authentication on, /readyz tells an anonymous client ready or not, and nothing of the build."""
    server = tuco(**secured(tmp_path))
    assert httpx.get(f"{server.url}/readyz").content == b'{"ready":true}'
    admin = httpx.get(f"{server.url}/readyz", headers=ADMIN).json()
    assert (admin["version"], admin["build"]) == (__version__, build.EXPECTED)
