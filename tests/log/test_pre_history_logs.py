"""Logs written by the release before change attribution replay unchanged (tests/fixtures/pre_history_*.log).

The fixtures were written by tuco's main branch at commit 89090e2 (transactions, before "who changed what"):
PUTs, an overwrite, a PUT then a DELETE, odd key bytes, a key with a ttl, a lease with an owner and a key on it,
and a transaction that puts a key and range-deletes ``tmp/``; and the same log compacted by that build.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.log.helpers import open_log, replay_fixture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = {
    "plain": (b"v2", 1, 2, 2),
    "bin\n\u00e9": (bytes(range(8)), 5, 5, 1),
    "moved": (b"m", 11, 11, 1),
    "far": (b"f", 6, 6, 1),
    "leased": (b"l", 8, 8, 1),
}


@pytest.mark.parametrize("name", ["pre_history_plain.log", "pre_history_compacted.log"])
def test_a_log_written_before_attribution_replays_to_the_same_state(name: str, tmp_path: Path) -> None:
    """Every key with its revisions, the deadline, the lease and its owner; the log takes new writes after it."""
    store = replay_fixture(FIXTURES / name)
    assert store.entries() == EXPECTED
    assert store.last_sequence == 11
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
            assert written.sequence == 12
            assert reopened.entries()["after"] == (b"a", 12, 12, 1)
        finally:
            await log.aclose()
        log, again = await open_log(copy)
        try:
            assert again.entries() == {**EXPECTED, "after": (b"a", 12, 12, 1)}
        finally:
            await log.aclose()

    asyncio.run(reopen())
