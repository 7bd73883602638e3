"""Every example of README.md and docs/ runs, in page order, against a fresh ``tuco serve`` (tests/docs/examples.py).

One test a page: its server is started with the page's ``<!-- server: ... -->`` settings on a free port and a
fresh data directory, and its commands run in one bash process; a command that exits non-zero, or prints other
than its shown output, fails the test with the page and line.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.examples import MARKER, match_output, parse_page, script
from tests.e2e.process import TucoProcess
from tests.needs import command as needs_command

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGE_TIMEOUT = 120.0


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


RUNNABLE = [page for page in PAGES if parse_page(page, page.read_text(encoding="utf-8")).runnable]


def test_pages_are_found() -> None:
    """The README and the quick start are among the pages whose examples run."""
    names = {_name(page) for page in RUNNABLE}
    assert {"README.md", "docs/index.md", "docs/getting-started.md", "docs/concepts.md"} <= names


def test_every_block_is_run_or_says_why() -> None:
    """Every fenced block names its language, so none is left out of the run by having none."""
    unlabelled = []
    for path in PAGES:
        for block in parse_page(path, path.read_text(encoding="utf-8")).blocks:
            if block.language == "":
                unlabelled.append(f"{_name(path)}:{block.line}")
    assert unlabelled == []


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory laid out like the checkout for the commands: .venv, scripts and deploy linked in."""
    work = tmp_path / "work"
    work.mkdir()
    for name in (".venv", "scripts", "deploy"):
        (work / name).symlink_to(ROOT / name)
    yield work


def _substitute(text: str, url: str) -> str:
    host = url.split("://", 1)[1]
    return text.replace("127.0.0.1:8080", host).replace("localhost:8080", host.replace("127.0.0.1", "localhost"))


@pytest.mark.slow
@pytest.mark.parametrize("path", RUNNABLE, ids=_name)
def test_examples_run_as_shown(path: Path, scratch: Path, tmp_path: Path) -> None:
    """The page's commands all exit 0 and print what the page shows, in order, from a fresh server."""
    needs_command("curl", "apt-get install curl")
    page = parse_page(path, path.read_text(encoding="utf-8"))
    env = dict(page.server)
    for name, value in env.items():
        if name.endswith("_FILE") and not (scratch / value).exists():
            (scratch / value).write_text(secrets.token_hex(32))
    env = {name: str(scratch / value) if name.endswith("_FILE") else value for name, value in env.items()}
    # A terminal shows no progress meter; curl writing into a pipe would, so the script's curl is told not to.
    (scratch / ".curlrc").write_text("no-progress-meter\n")
    server = TucoProcess({"TUCO_DATA_DIR": str(scratch / "data"), **env}, cwd=scratch)  # ./data, as scripts/run
    try:
        server.start()
        text, commands = script(page, sys.executable)
        base = {k: v for k, v in os.environ.items() if not k.startswith("TUCO_")}
        shell_env = {
            **base,
            "TUCO_URL": server.url,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "CURL_HOME": str(scratch),
            "HOME": str(scratch),
        }
        done = subprocess.run(
            ["bash", "-c", _substitute(text, server.url)],
            cwd=scratch,
            env=shell_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=PAGE_TIMEOUT,
            check=False,
        )
    finally:
        server.stop_quietly()
    chunks = done.stdout.decode("utf-8", "replace").split(MARKER)
    assert len(chunks) == len(commands) + 1, f"the script stopped early:\n{done.stdout.decode(errors='replace')}"
    for index, command in enumerate(commands):
        printed = chunks[index].split("\n", 1)[1] if index else chunks[index]  # after the marker's " STATUS"
        status = int(chunks[index + 1].split("\n", 1)[0])
        lines = [line.rstrip("\r") for line in printed.rstrip("\n").split("\n")] if printed.strip() else []
        where = f"{_name(path)}:{command.line}: {command.text!r}"
        assert status == 0, f"{where} exited {status}:\n" + "\n".join(lines)
        if command.expected is not None:
            expected = tuple(_substitute(line, server.url) for line in command.expected)
            assert match_output(expected, lines), f"{where} printed:\n" + "\n".join(lines)
