"""Logs written by the release before transactions replay unchanged with this build (tests/fixtures/pre_txn_*.log).

The fixtures were written by tuco's main branch before transactions (commit 2570f8a): PUTs, an overwrite, a
DELETE, odd key bytes, a key with a ttl, a granted lease with an owner and a key on it; and the same log
compacted by that build (a version 2 file). Both must replay to exactly the state that build served.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.log.helpers import open_log, replay_fixture
from tuco.core.txn import Compare, Txn, TxnOp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = {
    "plain": (b"v2", 1, 2, 2),
    "bin\n\u00e9": (bytes(range(8)), 5, 5, 1),
    "far": (b"f", 6, 6, 1),
    "leased": (b"l", 8, 8, 1),
}


@pytest.mark.parametrize("name", ["pre_txn_plain.log", "pre_txn_compacted.log"])
def test_a_log_of_the_previous_release_replays_to_the_same_state(name: str, tmp_path: Path) -> None:
    """Every key with its revisions, the deadline, the lease and its owner; and the log takes new writes after it."""
    store = replay_fixture(FIXTURES / name)
    assert store.entries() == EXPECTED
    assert store.last_sequence == 8
    assert store.key_expiry("far") is not None and store.key_expiry("far") > 1_700_000_000_000  # type: ignore[operator]
    assert store.lease_of("leased") == 7
    lease = store.leases.get(7)
    assert lease is not None and lease.owner == "owner"

    copy = tmp_path / name
    shutil.copyfile(FIXTURES / name, copy)

    async def reopen() -> None:
        log, reopened = await open_log(copy)
        try:
            assert reopened.entries() == EXPECTED
            written = await log.write_put("after", b"a")
            assert written.sequence == 9
            txn = Txn(
                (Compare("plain", "version", "==", 2),), (TxnOp("put", "plain", b"v3"), TxnOp("delete", "far")), ()
            )
            outcome = await log.write_txn(txn)
            assert (outcome.succeeded, outcome.revision) == (True, 10)
            assert reopened.entries()["plain"] == (b"v3", 1, 10, 3)
        finally:
            await log.aclose()

    asyncio.run(reopen())
