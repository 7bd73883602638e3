"""The README and the configuration page stay true: every setting is documented, and the two set-up commands exist."""

from __future__ import annotations

import os
from pathlib import Path

from tuco.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (ROOT / "docs" / "operations" / "configuration.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    """Each TUCO_* variable has a row in the table of docs/operations/configuration.md."""
    missing = [name for name in Settings.model_fields if f"| `TUCO_{name.upper()}` |" not in CONFIGURATION]
    assert missing == []


def test_the_table_documents_no_setting_that_does_not_exist() -> None:
    """No row names a variable the service does not read."""
    rows = [line.split("`")[1] for line in CONFIGURATION.splitlines() if line.startswith("| `TUCO_")]
    known = {f"TUCO_{name.upper()}" for name in Settings.model_fields}
    assert sorted(set(rows) - known) == []


def test_quick_start_commands_exist_and_ci_runs_the_test_command() -> None:
    """./scripts/run and ./scripts/test are in the README, executable, and .ci/run calls the latter."""
    for command in ("./scripts/run", "./scripts/test"):
        assert command in README
        assert os.access(ROOT / command, os.X_OK)
    assert "exec ./scripts/test" in (ROOT / ".ci" / "run").read_text()
