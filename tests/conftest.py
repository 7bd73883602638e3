"""Fixtures shared by every test directory: the PostgreSQL database, the connection-cutting proxy, the HA rig."""

import pytest

from tests import build
from tests.needs import unmarked_postgres

pytest_plugins = ["tests.fix_db", "tests.fix_proxy", "tests.fix_ha"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test another build than the one meant: a compiled run must not quietly test pure Python."""
    from tuco._build import build as installed

    found = installed()
    if found != build.EXPECTED:
        raise pytest.UsageError(
            f"EXPECT_TUCO_BUILD is {build.EXPECTED} but the tuco imported here is {found}"
            " (scripts/test runs the compiled build with PYTHONPATH=build/compiled)"
        )


@pytest.hookimpl(tryfirst=True)  # before -m deselects: an unmarked test is an error whatever the selection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run when a test asks for a PostgreSQL fixture without the ``postgres`` mark."""
    unmarked = unmarked_postgres(items)
    if unmarked:
        raise pytest.UsageError(
            "tests using PostgreSQL fixtures must be marked postgres (pytest.mark.postgres):\n  "
            + "\n  ".join(unmarked)
        )
