"""tuco list and the conditional client commands, run as a user would."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.e2e.process import TucoProcess
from tests.e2e.test_cli import _tuco

StartTuco = Callable[..., TucoProcess]


def test_conditional_put_and_delete_exit_4_when_the_condition_fails(tuco: StartTuco) -> None:
    """--create-only and --if-match REV write only when they hold; a failed one exits 4 naming the revision."""
    server = tuco()
    assert _tuco("put", "k", "v1", "--create-only", url=server.url).returncode == 0
    taken = _tuco("put", "k", "v2", "--create-only", url=server.url)
    assert (taken.returncode, taken.stderr.decode()) == (
        4,
        "tuco: 412 precondition_failed: the condition did not hold: the key is at revision 1 (current revision 1)\n",
    )
    assert _tuco("put", "k", "v2", "--if-match", "1", url=server.url).returncode == 0
    assert _tuco("get", "k", url=server.url).stdout == b"v2"
    stale = _tuco("delete", "k", "--if-match", "1", url=server.url)
    assert stale.returncode == 4
    assert _tuco("delete", "k", "--if-match", "2", url=server.url).returncode == 0
    assert _tuco("get", "k", url=server.url).returncode == 1
    usage = _tuco("put", "k", "v", "--if-match", "1", "--create-only", url=server.url)
    assert (usage.returncode, usage.stderr.decode()) == (2, "tuco: --if-match and --create-only exclude each other\n")
    assert _tuco("put", "k", "v", "--if-match", "zero", url=server.url).returncode == 2


def test_list_prints_keys_and_values_across_pages(tuco: StartTuco) -> None:
    """tuco list PREFIX follows every page; --keys-only prints keys; --json the items at one revision."""
    server = tuco()
    with server.client() as http:
        for n in range(1005):
            assert http.put(f"/v1/key/p{n:04d}", content=b"v").status_code == 201
        assert http.put("/v1/key/q%09tab", content=b"line\nnext\\\xff").status_code == 201
    listed = _tuco("list", "p", "--keys-only", url=server.url)
    assert listed.returncode == 0
    assert listed.stdout.decode().splitlines() == [f"p{n:04d}" for n in range(1005)]
    odd = _tuco("list", "q", url=server.url)
    assert odd.stdout == b"q\\ttab\tline\\nnext\\\\\\xff\n"
    as_json = _tuco("list", "q", "--json", url=server.url)
    assert json.loads(as_json.stdout) == {
        "revision": 1006,
        "items": [
            {"key": "q\ttab", "value": "bGluZQpuZXh0XP8=", "create_revision": 1006, "mod_revision": 1006, "version": 1}
        ],
    }
