"""The CLI problems a new user met (issue 11), each reproduced first: bytes, exit codes, prompts, help, output."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]


def _tuco(*args: str | bytes, url: str = "", stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess[bytes]:
    full_env = {**os.environ, **env}
    if url:
        full_env["TUCO_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "tuco", *args], input=stdin, env=full_env, capture_output=True, timeout=30, check=False
    )


def test_values_that_are_not_utf8_round_trip_from_the_command_line(tuco: StartTuco) -> None:
    """`tuco put k $'\\xff\\xfe'` stores those two bytes (it used to crash with a traceback); get prints them."""
    server = tuco()
    put = _tuco("put", "k", b"\xff\xfe", url=server.url)
    assert (put.returncode, put.stderr) == (0, b"")
    got = _tuco("get", "k", url=server.url)
    assert (got.returncode, got.stdout) == (0, b"\xff\xfe")


def test_values_from_a_file_and_from_stdin(tuco: StartTuco, tmp_path: Path) -> None:
    """--file PATH and `-` read any bytes; a missing file is a usage error (exit 2), not a traceback."""
    server = tuco()
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)) * 4)
    assert _tuco("put", "f", "--file", str(blob), url=server.url).returncode == 0
    assert _tuco("get", "f", url=server.url).stdout == blob.read_bytes()
    assert _tuco("put", "s", "-", url=server.url, stdin=b"\x00\x01").returncode == 0
    assert _tuco("get", "s", url=server.url).stdout == b"\x00\x01"
    missing = _tuco("put", "f", "--file", str(tmp_path / "nope"), url=server.url)
    assert missing.returncode == 2 and b"Traceback" not in missing.stderr
    both = _tuco("put", "f", "v", "--file", str(blob), url=server.url)
    assert both.returncode == 2
    assert both.stderr.decode().strip().splitlines()[-1] == "tuco: give the value once: as VALUE, --file or -"


def test_keys_that_are_not_utf8_are_refused_with_a_message(tuco: StartTuco) -> None:
    """A key argument that is not valid UTF-8 exits 2 with one line saying so; nothing is sent."""
    server = tuco()
    for command in (("get", b"\xff"), ("put", b"\xffk", "v"), ("delete", b"k\xfe")):
        result = _tuco(*command, url=server.url)
        assert result.returncode == 2, command
        assert result.stderr == b"tuco: a key must be valid UTF-8 (tuco keys are text)\n", command
    with server.client() as http:
        assert http.get("/v1/keys").json()["items"] == []


def test_exit_codes_tell_apart_missing_key_other_404_conflict_and_unreachable(tuco: StartTuco) -> None:
    """1 no such key, 4 precondition failed, 3 server unreachable, 7 any other refusal (a 404 not_found too)."""
    server = tuco()
    assert _tuco("get", "nope", url=server.url).returncode == 1
    assert _tuco("put", "k", "v", url=server.url).returncode == 0
    assert _tuco("put", "k", "w", "--create-only", url=server.url).returncode == 4
    assert _tuco("get", "k", url="http://127.0.0.1:9").returncode == 3
    wrong_base = _tuco("get", "k", url=server.url + "/not-tuco")
    assert wrong_base.returncode == 7
    assert wrong_base.stderr.decode().startswith("tuco: 404 not_found")
    big = _tuco("put", "k", "-", url=server.url, stdin=b"x" * (2 << 20))
    assert big.returncode == 7 and big.stderr.decode().startswith("tuco: 413 value_too_large")


def test_put_without_a_value_on_a_terminal_says_how_to_give_one(tuco: StartTuco) -> None:
    """`tuco put KEY` with stdin on a terminal exits 2 at once with a hint instead of waiting silently."""
    server = tuco()
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tuco", "put", "k"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TUCO_URL": server.url},
    )
    os.close(follower)
    try:
        _, errors = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    assert process.returncode == 2
    assert errors == (
        b"tuco: no value given: pass it as VALUE, with --file PATH, or on standard input (tuco put KEY - < file)\n"
    )


def test_output_json_and_raw(tuco: StartTuco) -> None:
    """--output json prints the key's value (base64) and revisions; --output raw the exact bytes (the default)."""
    server = tuco()
    put = _tuco("put", "k", "hi", "--output", "json", url=server.url)
    assert put.returncode == 0
    written = json.loads(put.stdout)
    assert set(written) == {"key", "revision", "expires_at"} and written["key"] == "k"
    got = _tuco("get", "k", "--output", "json", url=server.url)
    entry = json.loads(got.stdout)
    assert (entry["key"], entry["value"], entry["mod_revision"]) == ("k", "aGk=", written["revision"])
    assert _tuco("get", "k", "--output", "raw", url=server.url).stdout == b"hi"
    bad = _tuco("get", "k", "--output", "yaml", url=server.url)
    assert bad.returncode == 2 and b"'yaml' is not one of 'raw', 'json'" in bad.stderr


def test_serve_help_shows_defaults_choices_and_switches() -> None:
    """`tuco serve --help` names each flag's type, default and choices; booleans are switches."""
    result = _tuco("serve", "--help")
    text = " ".join(result.stdout.decode().split())  # the help is wrapped to the terminal's width
    assert result.returncode == 0
    assert re.search(r"--[a-z-]+ VALUE\b", text) is None
    assert "--port INTEGER" in text and "[env: TUCO_PORT; default: 8080]" in text
    assert "--log-sync [always|everysec]" in text
    assert "--log-level [debug|info|warning|error]" in text
    assert "--listen-notify / --no-listen-notify" in text
    assert "[env: TUCO_LISTEN_NOTIFY; default: on]" in text


@pytest.mark.postgres
def test_listen_notify_is_a_switch(tuco: StartTuco, pg_dsn: str) -> None:
    """`tuco serve --no-listen-notify` takes no argument and turns LISTEN/NOTIFY off."""
    server = tuco(args=["--no-listen-notify"], TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    assert server.wait_for("starting")["config"]["listen_notify"] is False


def test_log_dump_output_json(tuco: StartTuco, tmp_path: Path) -> None:
    """`tuco log dump --output json` prints one JSON object per event with every field, values base64."""
    server = tuco()
    with server.client() as http:
        assert http.put("/v1/key/a", content=b"\xff").status_code == 201
        assert http.put("/v1/key/a", content=b"2").status_code == 201
        assert http.delete("/v1/key/a").status_code == 200
    assert server.terminate() == 0
    dump = _tuco("log", "dump", "--output", "json", str(tmp_path / "data" / "tuco.log"))
    assert dump.returncode == 0
    shown = [json.loads(line) for line in dump.stdout.splitlines()]
    assert all(isinstance(event.pop("at"), int) for event in shown)  # the moment of each change (issue 24)
    assert shown == [
        {
            "sequence": 1,
            "type": "PUT",
            "key": "a",
            "value": "/w==",
            "create_revision": 1,
            "version": 1,
            "by": "anonymous",
        },
        {
            "sequence": 2,
            "type": "PUT",
            "key": "a",
            "value": "Mg==",
            "create_revision": 1,
            "version": 2,
            "by": "anonymous",
        },
        {"sequence": 3, "type": "DELETE", "key": "a", "by": "anonymous", "reason": "deleted"},
    ]
