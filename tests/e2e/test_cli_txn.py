"""tuco txn, tuco delete --prefix and the client's transaction builder against a real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.process import TucoProcess
from tests.e2e.test_cli import _tuco, without_moments
from tuco.client import Client, Item, Listed
from tuco.errors import TxnBytesLimitError

StartTuco = Callable[..., TucoProcess]


def test_tuco_txn_from_stdin_and_delete_prefix(tuco: StartTuco) -> None:
    """A transaction piped in prints its outcome and results; the failure branch exits 4; a range delete counts."""
    server = tuco()
    for key in ("t/1", "t/2", "keep"):
        assert _tuco("put", key, "v", url=server.url).returncode == 0
    body = {
        "compare": [{"key": "new", "target": "exists", "op": "==", "value": False}],
        "success": [{"put": {"key": "new", "value": "aGk="}}, {"get": {"key": "new"}}],
        "failure": [{"get": {"key": "keep"}}],
    }
    done = _tuco("txn", url=server.url, stdin=json.dumps(body).encode())
    assert (done.returncode, done.stdout.decode()) == (0, "succeeded 4\n4\nnew\thi\n")
    again = _tuco("txn", "--output", "json", "-", url=server.url, stdin=json.dumps(body).encode())
    assert again.returncode == 4
    assert json.loads(again.stdout) == {
        "succeeded": False,
        "revision": 4,
        "results": [{"key": "keep", "value": "dg==", "create_revision": 3, "mod_revision": 3, "version": 1}],
    }
    bad = _tuco("txn", url=server.url, stdin=b'{"success": [{"put": {"key": "a"}}, {"put": {"key": "a"}}]}')
    assert bad.returncode != 0 and bad.stderr.decode().startswith("tuco: 400 invalid_txn")
    gone = _tuco("delete", "--prefix", "t/", url=server.url)
    assert (gone.returncode, gone.stdout) == (0, b"2\n")
    refused = _tuco("delete", "--prefix", "", url=server.url)
    assert refused.returncode == 2
    everything = _tuco("delete", "--output", "json", "--prefix", "", "--all", url=server.url)
    assert json.loads(everything.stdout) == {"prefix": "", "deleted": 2, "revision": 6}


def test_the_client_builder(tuco: StartTuco) -> None:
    """Client.txn(): compares, both branches, each result typed; delete_prefix() answers the count and revision."""
    server = tuco()
    with Client(server.url) as client:
        client.put("a", b"1")
        txn = client.txn().when("a", "value", "==", b"1").when("b", "exists", "==", False)
        txn.then.put("b", b"2").put("c/x", "3", ttl=60).get("a").list("c/", 5).delete("zzz")
        txn.otherwise.get("b")
        result = txn.commit()
        assert (result.succeeded, result.revision) == (True, 2)
        assert result.results[:2] == (2, 2)
        got = result.results[2]
        assert isinstance(got, Item) and (got.key, got.value, got.mod_revision) == ("a", b"1", 1)
        listed = result.results[3]
        assert isinstance(listed, Listed) and [i.key for i in listed.items] == ["c/x"] and not listed.more
        assert result.results[4] == 0
        assert client.delete_prefix("c/") == (1, 3)


def test_reads_at_a_revision_from_the_client_and_the_cli(tuco: StartTuco) -> None:
    """get(revision=) and tuco get --revision read the older value; a revision before the history exits 5."""
    server = tuco(TUCO_HISTORY_MAX_BYTES="4000")
    with Client(server.url) as client:
        for n in range(40):
            client.put("k", b"%d" % n)
        entry = client.get("k", revision=39)
        assert (entry.value, entry.mod_revision, entry.revision) == (b"38", 39, 39)
    got = _tuco("get", "k", "--revision", "40", url=server.url)
    assert (got.returncode, got.stdout) == (0, b"39")
    gone = _tuco("get", "k", "--revision", "1", url=server.url)
    assert gone.returncode == 5 and gone.stderr.decode().startswith("tuco: 410 history_compacted")


def test_log_dump_shows_a_transactions_writes_at_its_revision(tuco: StartTuco, tmp_path: Path) -> None:
    """tuco log dump prints each write of a transaction on its own line, all with the transaction's sequence."""
    server = tuco(TUCO_DATA_DIR=str(tmp_path / "data"))
    with Client(server.url) as client:
        client.put("gone", b"x")
        txn = client.txn()
        txn.then.put("a", b"1").delete("gone")
        assert txn.commit().revision == 2
    server.terminate()
    dumped = _tuco("log", "dump", str(tmp_path / "data" / "tuco.log"))
    assert dumped.returncode == 0, dumped.stderr
    assert without_moments(dumped.stdout.decode()) == [
        "1\tPUT\t'gone'\tb'x'\tcreate_revision=1\tversion=1\tby=anonymous",
        "2\tPUT\t'a'\tb'1'\tcreate_revision=2\tversion=1\tby=anonymous",
        "2\tDELETE\t'gone'\tb''\tby=anonymous\treason=deleted",
    ]


def test_a_transaction_at_its_byte_cap_commits_though_its_body_is_over_the_value_limit(tuco: StartTuco) -> None:
    """The served body limit of POST /v1/txn follows TUCO_MAX_TXN_BYTES, not TUCO_MAX_VALUE_BYTES (a 413 before)."""
    server = tuco(TUCO_MAX_VALUE_BYTES="1000", TUCO_MAX_TXN_BYTES="20000", TUCO_MAX_TXN_OPS="20")
    with Client(server.url) as client:
        txn = client.txn()
        for i in range(20):
            txn.then.put(f"k{i:02d}", b"v" * 997)  # 20 x (3 + 997) = 20,000: the cap exactly, a 27 KB body
        outcome = txn.commit()
        assert (outcome.succeeded, outcome.revision) == (True, 1)
        assert client.get("k19").value == b"v" * 997
        over = client.txn()
        for i in range(20):
            over.then.put(f"k{i:02d}", b"w" * 998)
        with pytest.raises(TxnBytesLimitError):
            over.commit()
        assert client.get("k00").value == b"v" * 997
