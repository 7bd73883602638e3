"""What a test needs from the machine, and what a missing part does to it.

``./scripts/test`` (so ``.ci/run``) sets ``CI=true`` whatever its caller's
environment: there a missing part (PostgreSQL, strace, Chromium, a tmpfs, the
failover rig's binaries, node, curl...) fails the test that needs it, so the run
fails. A plain ``pytest`` run without ``CI=true`` skips such a test with the reason.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["command", "strict", "unavailable"]


def strict() -> bool:
    """Whether a missing part fails the test (under ``CI=true``, as ``scripts/test`` sets) rather than skips it."""
    return os.environ.get("CI") == "true"


def unavailable(reason: str) -> NoReturn:
    """Fail the test under ``CI=true``; skip it otherwise. ``reason`` says what is missing and how to get it."""
    if strict():
        pytest.fail(f"{reason} (CI=true: a missing part fails the run)", pytrace=False)
    pytest.skip(reason)


def command(name: str, how: str) -> str:
    """The path of the program ``name`` on PATH; :func:`unavailable` with ``how`` (to install it) if there is none."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed ({how})")
    return found
