"""The example convention of tests/docs/examples.py: what is run, what is compared, what drift fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.examples import MARKER, commands, match_output, parse_page, script

PAGE = """<!-- server: TUCO_AUTH=token TUCO_BOOTSTRAP_TOKEN_FILE=bootstrap -->
```console
$ tuco put greeting hello
1
$ curl -X PUT \\
  --data-binary x http://127.0.0.1:8080/v1/key/a
$ tuco get gone || echo "exit $?"
...
exit 1
```

<!-- norun: a crontab line -->
```sh
0 3 * * * tuco snapshot save /backups/x.snap
```

```json
{"not": "run"}
```
"""


def test_blocks_norun_reasons_and_server_settings_are_read() -> None:
    """A page's blocks come in order; the norun one carries its reason; the server comment gives settings."""
    page = parse_page(Path("page.md"), PAGE)
    assert [(block.language, block.norun) for block in page.blocks] == [
        ("console", None),
        ("sh", "a crontab line"),
        ("json", None),
    ]
    assert page.server == {"TUCO_AUTH": "token", "TUCO_BOOTSTRAP_TOKEN_FILE": "bootstrap"}
    assert [block.language for block in page.runnable] == ["console"]


def test_console_commands_continue_lines_and_carry_their_output() -> None:
    """A trailing backslash continues a command; each command carries the lines after it, or None."""
    [block] = parse_page(Path("page.md"), PAGE).runnable
    assert [(command.line, command.text, command.expected) for command in commands(block)] == [
        (3, "tuco put greeting hello", ("1",)),
        (5, "curl -X PUT \\\n  --data-binary x http://127.0.0.1:8080/v1/key/a", None),
        (7, 'tuco get gone || echo "exit $?"', ("...", "exit 1")),
    ]


def test_the_script_reports_each_command_status() -> None:
    """The page's script runs every command followed by a marker with its exit status."""
    text, every = script(parse_page(Path("page.md"), PAGE), "/usr/bin/python3")
    assert len(every) == 3
    assert text.count(f"printf '{MARKER} %d\\n' $?") == 3


def test_a_norun_comment_without_a_reason_is_refused() -> None:
    """An empty norun reason is an error, not a silent skip."""
    with pytest.raises(ValueError, match="must say why"):
        parse_page(Path("page.md"), "<!-- norun: -->\n```sh\nls\n```\n")


def test_output_outside_a_command_is_refused() -> None:
    """A console block whose first line is not a `$ ` command cannot be read as a terminal."""
    [block] = parse_page(Path("page.md"), "```console\noops\n```\n").blocks
    with pytest.raises(ValueError, match="before any"):
        commands(block)


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        (("1",), ["1"], True),
        (("1",), ["2"], False),  # a drifted revision fails
        (("1",), ["1", "2"], False),  # so does an extra line
        (("HTTP/1.1 201 Created", "...", 'ETag: "1"', "..."), ["HTTP/1.1 201 Created", 'ETag: "1"', "Date: x"], True),
        (("HTTP/1.1 201 Created", "...", 'ETag: "1"'), ["HTTP/1.1 412 Precondition Failed", 'ETag: "1"'], False),
        (('{"id":8,"expires_at":...}',), ['{"id":8,"expires_at":1796429201346}'], True),
        (('{"id":8,"expires_at":...}',), ['{"id":9,"expires_at":1796429201346}'], False),
        ((), [], True),
        ((), ["unexpected"], False),
    ],
)
def test_shown_output_is_matched_line_by_line(expected: tuple[str, ...], actual: list[str], matches: bool) -> None:
    """`...` stands for any text in a line or any lines on its own; everything else must be equal."""
    assert match_output(expected, actual) is matches
