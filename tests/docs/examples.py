"""The examples of README.md and docs/: found in page order, turned into one shell script a page, checked.

The convention (docs/development.md, "Examples"):

- A ```` ```console ```` block is a terminal: ``$ COMMAND`` lines (continued on the next line after a trailing
  ``\\``), each followed by the output it prints (stdout and stderr as a terminal shows them). Shown output is
  compared line by line; ``...`` inside a line stands for any text, and a line that is only ``...`` for any
  number of lines. A command with no output shown is not compared. Every command must exit 0: one that is
  meant to fail shows it, as in ``tuco get gone || echo "exit $?"``.
- A ```` ```sh ```` or ```` ```bash ```` block is a script: each command must exit 0, its output is not shown.
- A ```` ```python ```` block runs with the server's Python; it checks itself with ``assert``.
- ``<!-- norun: REASON -->`` on the line before a block skips it, and says why (a deployment, a cron line...).
- ``<!-- server: NAME=VALUE ... -->`` anywhere on a page starts that page's fresh server with those settings.

The commands of one page share one ``bash`` process (variables and files carry from block to block), run in a
scratch directory holding ``.venv``, ``scripts`` and ``deploy`` of the checkout, so they are typed as a newcomer
types them there. ``127.0.0.1:8080`` and ``localhost:8080`` mean the page's server, wherever it listens.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Block", "Command", "Page", "match_output", "parse_page", "script"]

RUN_LANGUAGES = frozenset({"console", "sh", "bash", "python"})
MARKER = "\x1etuco-example-done"
_FENCE = re.compile(r"^(```+)\s*([\w-]*)")
_NORUN = re.compile(r"^<!--\s*norun:\s*(.*?)\s*-->\s*$")
_SERVER = re.compile(r"^<!--\s*server:\s*(.*?)\s*-->\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    """One command of a block, the 1-based line of the page it starts on, and its shown output (or None)."""

    line: int
    text: str
    expected: tuple[str, ...] | None


@dataclass(frozen=True)
class Block:
    """A fenced block: its language, first line, text, and why it does not run (None when it runs)."""

    language: str
    line: int
    text: str
    norun: str | None


@dataclass
class Page:
    """A page's runnable blocks in order and the settings of the server its examples talk to."""

    path: Path
    blocks: list[Block] = field(default_factory=list)
    server: dict[str, str] = field(default_factory=dict)

    @property
    def runnable(self) -> list[Block]:
        return [block for block in self.blocks if block.language in RUN_LANGUAGES and block.norun is None]


def parse_page(path: Path, text: str) -> Page:
    """Every fenced block of ``text`` with its norun reason; an empty reason is an error."""
    page = Page(path)
    for found in _SERVER.finditer(text):
        for pair in shlex.split(found.group(1)):
            name, _, value = pair.partition("=")
            page.server[name] = value
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        ticks, language = fence.group(1), fence.group(2)
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith(ticks):
            body.append(lines[index])
            index += 1
        index += 1
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        norun = _NORUN.match(previous)
        if norun is not None and not norun.group(1):
            raise ValueError(f"{path}:{start}: a norun comment must say why")
        page.blocks.append(Block(language, start + 1, "\n".join(body), norun.group(1) if norun else None))
    return page


def _joined(lines: list[str], index: int) -> tuple[str, int]:
    """The command starting at ``lines[index]``, with its ``\\``-continued lines; the index after it."""
    parts = [lines[index]]
    while parts[-1].endswith("\\") and index + 1 < len(lines):
        index += 1
        parts.append(lines[index])
    return "\n".join(parts), index + 1


def commands(block: Block) -> list[Command]:
    """The commands of a block; a console block's shown output with each."""
    lines = block.text.split("\n")
    found: list[Command] = []
    index = 0
    if block.language == "python":
        return [Command(block.line + 1, block.text, None)]
    while index < len(lines):
        line = lines[index]
        if block.language == "console":
            if not line.startswith("$ "):
                raise ValueError(f"line {block.line + 1 + index}: console output before any `$ ` command")
            text, after = _joined([line[2:], *lines[index + 1 :]], 0)
            after += index
            output: list[str] = []
            while after < len(lines) and not lines[after].startswith("$ "):
                output.append(lines[after])
                after += 1
            while output and not output[-1].strip():
                output.pop()
            found.append(Command(block.line + 1 + index, text, tuple(output) if output else None))
            index = after
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            index += 1
            continue
        text, after = _joined(lines, index)
        found.append(Command(block.line + 1 + index, text, None))
        index = after
    return found


def script(page: Page, python: str) -> tuple[str, list[Command]]:
    """One bash script running every command of the page in order, each followed by a marker with its status."""
    out = ["set -u"]
    every: list[Command] = []
    for block in page.runnable:
        for command in commands(block):
            text = command.text
            if block.language == "python":
                text = f"{shlex.quote(python)} - <<'TUCO_EXAMPLE_PYTHON'\n{text}\nTUCO_EXAMPLE_PYTHON"
            out.append(f"{text}\nprintf '{MARKER} %d\\n' $?")
            every.append(command)
    return "\n".join(out) + "\n", every


def _line_matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual) is not None


def match_output(expected: tuple[str, ...], actual: list[str]) -> bool:
    """Whether ``actual`` lines are the ``expected`` ones, ``...`` standing for any text or any lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(match_output(rest, actual[skip:]) for skip in range(len(actual) + 1))
    return bool(actual) and _line_matches(head, actual[0]) and match_output(rest, actual[1:])
