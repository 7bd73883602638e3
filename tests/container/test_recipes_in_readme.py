"""The README's "Deploy" commands are the ones the container tests run: the same lines, both ways."""

from __future__ import annotations

import re

from tests.container import recipes
from tests.container.conftest import ROOT


def _deploy_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_every_deploy_command_in_the_readme_is_run_by_the_tests() -> None:
    """Each line of the Deploy section's shell blocks is one of the commands tests/container runs."""
    assert [line for line in _deploy_commands() if line not in recipes.ALL] == []


def test_every_command_the_tests_run_is_in_the_readme() -> None:
    """Each command tests/container runs from its recipes is shown, word for word, in the Deploy section."""
    assert [command for command in recipes.ALL if command not in _deploy_commands()] == []
