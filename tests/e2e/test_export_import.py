"""tuco export and tuco import between real servers: exact bytes, prefix rewrites, modes, and resuming after a kill."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``tuco ARGS`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "tuco", *args], capture_output=True, text=True, timeout=300, check=False, input=stdin
    )


def state(server: TucoProcess, prefix: str = "") -> dict[str, tuple[bytes, int]]:
    """Every key under ``prefix`` with its value and version."""
    found: dict[str, tuple[bytes, int]] = {}
    token = None
    with server.client() as http:
        while True:
            params: dict[str, str | int] = {"prefix": prefix, "limit": 1000}
            if token:
                params["page_token"] = token
            page = http.get("/v1/keys", params=params).json()
            for item in page["items"]:
                found[item["key"]] = (base64.b64decode(item["value"]), item["version"])
            token = page["next_page_token"]
            if token is None:
                return found


def fill(server: TucoProcess, keys: dict[str, bytes]) -> None:
    with server.client() as http:
        for key, value in keys.items():
            assert http.put(key_path(key), content=value).status_code == 201


EVERY_BYTE = {f"app/{n:03d}": bytes([n]) * (n % 7) + bytes(range(256)) for n in range(120)}


def test_every_byte_value_round_trips_through_export_and_import(tuco: StartTuco, tmp_path: Path) -> None:
    """Exported from one server and imported into another, every key under the prefix has exactly its bytes."""
    source = tuco(data_dir=tmp_path / "a")
    fill(source, {**EVERY_BYTE, "other/x": b"not exported", "app/ttl": b"t"})
    with source.client() as http:
        assert http.put(key_path("app/ttl"), params={"ttl": "1h"}, content=b"t").status_code == 201
    exported = cli("export", "--prefix", "app/", "--url", source.url)
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == "exported 121 keys\n"
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    ttl_line = next(line for line in lines if line["key"] == "app/ttl")
    assert 3_500_000 < ttl_line["ttl_ms"] <= 3_600_000
    target = tuco(data_dir=tmp_path / "b")
    imported = cli("import", "-", "--url", target.url, stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr == "imported: 121 written, 0 unchanged, 0 existing, 0 conflicts\n"
    copied = state(target)
    assert {key: value for key, (value, _) in copied.items()} == {**EVERY_BYTE, "app/ttl": b"t"}
    with target.client() as http:
        assert int(http.get(key_path("app/ttl")).headers["x-tuco-expires-at"]) > 0


def test_create_only_never_overwrites_and_a_prefix_rewrite_renames(tuco: StartTuco, tmp_path: Path) -> None:
    """--mode create-only leaves existing keys alone (counted as existing); --prefix-rewrite moves the subtree."""
    server = tuco()
    fill(server, EVERY_BYTE)
    fill(server, {"copy/005": b"mine", "copy/050": b"mine too"})
    exported = cli("export", "--prefix", "app/", "--url", server.url)
    path = tmp_path / "app.jsonl"
    path.write_text(exported.stdout)
    done = cli("import", str(path), "--prefix-rewrite", "app/=copy/", "--url", server.url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "imported: 118 written, 0 unchanged, 2 existing, 0 conflicts\n"
    copied = state(server, "copy/")
    assert copied.pop("copy/005") == (b"mine", 1)
    assert copied.pop("copy/050") == (b"mine too", 1)
    expected = {"copy/" + key[4:]: (value, 1) for key, value in EVERY_BYTE.items() if key not in ("app/005", "app/050")}
    assert copied == expected
    assert {key: value for key, (value, _) in state(server, "app/").items()} == EVERY_BYTE  # the source is untouched


def test_if_unchanged_writes_only_keys_still_at_their_exported_revision(tuco: StartTuco, tmp_path: Path) -> None:
    """Put back a subtree: keys still at the exported revision are written, one changed since is a conflict (exit 4)."""
    server = tuco()
    fill(server, {"cfg/a": b"1", "cfg/b": b"2", "cfg/c": b"3"})
    exported = cli("export", "--prefix", "cfg/", "--url", server.url).stdout
    edited = "\n".join(
        json.dumps({**line, "value": base64.b64encode(b"restored").decode()})
        for line in map(json.loads, exported.splitlines())
    )
    fill(server, {"cfg/b": b"changed meanwhile"})
    done = cli("import", "-", "--mode", "if-unchanged", "--url", server.url, stdin=edited)
    assert done.returncode == 4
    assert done.stderr == "imported: 2 written, 0 unchanged, 0 existing, 1 conflicts\n"
    assert {key: value for key, (value, _) in state(server, "cfg/").items()} == {
        "cfg/a": b"restored",
        "cfg/b": b"changed meanwhile",
        "cfg/c": b"restored",
    }


def test_an_import_killed_midway_and_rerun_equals_one_clean_run(tuco: StartTuco, tmp_path: Path) -> None:
    """SIGKILL an overwrite import partway, run it again: keys, values and versions equal a clean run's."""
    keys = {f"bulk/{n:05d}": os.urandom(n % 50) for n in range(1500)}
    source = tuco(data_dir=tmp_path / "a")
    fill(source, keys)
    path = tmp_path / "bulk.jsonl"
    path.write_text(cli("export", "--url", source.url).stdout)
    target = tuco(data_dir=tmp_path / "b")
    fill(target, {"bulk/00007": b"stale", "bulk/01400": b"stale"})
    args = [sys.executable, "-m", "tuco", "import", str(path), "--mode", "overwrite", "--url", target.url]
    process = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=target.url) as http:
        while http.get(key_path("bulk/00500")).status_code != 200:
            assert process.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(state(target)) < len(keys)
    done = cli("import", str(path), "--mode", "overwrite", "--url", target.url)
    assert done.returncode == 0, done.stderr
    clean = tuco(data_dir=tmp_path / "c")
    fill(clean, {"bulk/00007": b"stale", "bulk/01400": b"stale"})
    assert cli("import", str(path), "--mode", "overwrite", "--url", clean.url).returncode == 0
    assert state(target) == state(clean)
    assert {key: value for key, (value, _) in state(target).items()} == keys
    again = cli("import", str(path), "--mode", "overwrite", "--url", target.url)
    assert again.stderr == "imported: 0 written, 1500 unchanged, 0 existing, 0 conflicts\n"


def test_a_line_that_is_not_an_export_line_is_a_usage_error(tuco: StartTuco, tmp_path: Path) -> None:
    """A malformed line stops the import with exit 2 naming the line; the lines before it were written."""
    server = tuco()
    lines = '{"key": "a", "value": "YQ=="}\n{"key": "b", "value": "not base64!"}\n'
    done = cli("import", "-", "--url", server.url, stdin=lines)
    assert done.returncode == 2
    assert done.stderr.startswith("tuco: line 2 is not an export line (")
    assert state(server) == {"a": (b"a", 1)}


def _revisions(server: TucoProcess, prefix: str) -> set[int]:
    with server.client() as http:
        items = http.get("/v1/keys", params={"prefix": prefix, "limit": 1000}).json()["items"]
    return {item["mod_revision"] for item in items}


def test_an_import_writes_each_batch_of_100_keys_in_one_transaction(tuco: StartTuco, tmp_path: Path) -> None:
    """250 keys arrive at three revisions (batches of 100, 100, 50); on a server whose caps refuse such a
    transaction (TUCO_MAX_TXN_OPS=50) the same import goes key by key and ends the same."""
    keys = {f"batch/{n:03d}": os.urandom(n % 40) for n in range(250)}
    source = tuco(data_dir=tmp_path / "a")
    fill(source, keys)
    path = tmp_path / "batch.jsonl"
    path.write_text(cli("export", "--url", source.url).stdout)
    target = tuco(data_dir=tmp_path / "b")
    done = cli("import", str(path), "--url", target.url)
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith("imported: 250 written, 0 unchanged, 0 existing, 0 conflicts\n")
    assert {key: value for key, (value, _) in state(target).items()} == keys
    assert len(_revisions(target, "batch/")) == 3
    capped = tuco(data_dir=tmp_path / "c", TUCO_MAX_TXN_OPS="50")
    done = cli("import", str(path), "--url", capped.url)
    assert done.returncode == 0, done.stderr
    assert {key: value for key, (value, _) in state(capped).items()} == keys
    assert len(_revisions(capped, "batch/")) == 250
