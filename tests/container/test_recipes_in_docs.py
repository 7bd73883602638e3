"""The deployment pages' commands (docs/deployment/) are the ones the container tests run: the same lines, both ways."""

from __future__ import annotations

import re

from tests.container import recipes
from tests.container.conftest import ROOT


def _deploy_commands() -> list[str]:
    pages = ("container.md", "compose.md", "kubernetes.md")
    text = "".join((ROOT / "docs" / "deployment" / page).read_text(encoding="utf-8") for page in pages)
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_every_deploy_command_in_the_docs_is_run_by_the_tests() -> None:
    """Each line of the deployment pages' shell blocks is one of the commands tests/container runs."""
    assert [line for line in _deploy_commands() if line not in recipes.ALL] == []


def test_every_command_the_tests_run_is_in_the_docs() -> None:
    """Each command tests/container runs from its recipes is shown, word for word, on a deployment page."""
    assert [command for command in recipes.ALL if command not in _deploy_commands()] == []
