"""What a test needs from the machine, and what a missing part does to it.

``./scripts/test`` (so ``.ci/run``) sets ``CI=true`` whatever its caller's
environment: there a missing part (PostgreSQL, strace, Chromium, a tmpfs, the
failover rig's binaries, node, curl...) fails the test that needs it, so the run
fails. A plain ``pytest`` run without ``CI=true`` skips such a test with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from typing import NoReturn

import pytest

__all__ = ["POSTGRES_FIXTURES", "command", "postgres_marked", "strict", "unavailable", "unmarked_postgres"]

# The fixtures that reach a PostgreSQL server or run one (any fixture built on them is in a test's closure too).
POSTGRES_FIXTURES = frozenset({"pg_dsn", "ha_cluster"})


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


def unmarked_postgres(items: Iterable[pytest.Item]) -> list[str]:
    """The ids of the tests that ask for a PostgreSQL fixture without the ``postgres`` mark."""
    return [
        item.nodeid
        for item in items
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("postgres") is None
    ]


def postgres_marked(request: pytest.FixtureRequest) -> None:
    """Fail the test unless it is marked ``postgres``, so ``-m "not postgres"`` never reaches the database.

    Catches what collection cannot see: a fixture asked for through ``request.getfixturevalue``.
    """
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(
            f"{request.node.nodeid} uses PostgreSQL ({request.fixturename}) but is not marked postgres: "
            "add pytest.mark.postgres (for a parameter: pytest.param(..., marks=pytest.mark.postgres))",
            pytrace=False,
        )
