"""Transactions on the file log: one record each, replayed whole or not at all, kept across a compaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.log.helpers import disk_bytes, open_log
from tuco.core.codec import HEADER_SIZE
from tuco.core.events import EventType
from tuco.core.store import Store
from tuco.core.txn import Compare, Txn, TxnOp
from tuco.log._compaction import compact_log
from tuco.log.file import LogReader
from tuco.testing import MemoryLog, RecordingSink

TRANSFER = Txn(
    (Compare("alice", "mod_revision", "==", 1), Compare("bob", "mod_revision", "==", 2)),
    (TxnOp("put", "alice", b"70"), TxnOp("put", "bob", b"130"), TxnOp("delete_prefix", "tmp/")),
    (),
)


def replayed(path: Path) -> tuple[dict[str, tuple[bytes, int, int, int]], int, str | None]:
    """The entries and last sequence a restart would have, and why reading stopped (None: the end)."""
    store = Store()
    reader = LogReader(path)
    for batch in reader:
        store.apply_batch(batch)
    assert reader.report is not None
    return store.entries(), store.last_sequence, reader.report.problem


async def write_transfer(path: Path) -> None:
    log, _ = await open_log(path)
    try:
        await log.write_put("alice", b"100")
        await log.write_put("bob", b"100")
        await log.write_put("tmp/x", b"x")
        outcome = await log.write_txn(TRANSFER)
        assert (outcome.succeeded, outcome.revision) == (True, 4)
    finally:
        await log.aclose()


def test_a_transaction_is_one_record_and_replays_at_one_revision(tmp_path: Path) -> None:
    """After a restart the transaction's writes are all there, at its one revision, with their versions."""
    path = tmp_path / "log"
    asyncio.run(write_transfer(path))
    entries, last, problem = replayed(path)
    assert problem is None
    assert last == 4
    assert entries == {"alice": (b"70", 1, 4, 2), "bob": (b"130", 2, 4, 2)}


def test_a_torn_transaction_applies_none_of_its_writes(tmp_path: Path) -> None:
    """A transaction record cut anywhere is dropped whole: the state is the one before it, never half of it."""
    path = tmp_path / "log"
    asyncio.run(write_transfer(path))
    whole = disk_bytes(path)
    before, _, _ = replayed(path)
    # The last record is the transaction: find where it starts by replaying prefixes of the file.
    starts = [n for n in range(HEADER_SIZE, len(whole)) if _last_sequence(tmp_path, whole[:n]) == 3]
    start = starts[0]
    assert len(whole) - start > 60  # two puts and a delete in one record
    for cut in range(start + 1, len(whole), 7):
        torn = tmp_path / f"torn{cut}"
        torn.write_bytes(whole[:cut])
        entries, last, _ = replayed(torn)
        assert last == 3, cut
        assert entries == {"alice": (b"100", 1, 1, 1), "bob": (b"100", 2, 2, 1), "tmp/x": (b"x", 3, 3, 1)}
    assert before["alice"][2] == 4


def _last_sequence(tmp_path: Path, data: bytes) -> int:
    probe = tmp_path / "probe"
    probe.write_bytes(data)
    return replayed(probe)[1]


def test_compaction_keeps_keys_that_share_a_revision(tmp_path: Path) -> None:
    """A compacted log holds entries with equal revisions (one transaction's keys); it replays to the same state."""
    path = tmp_path / "log"
    asyncio.run(write_transfer(path))

    async def more() -> None:
        log, _ = await open_log(path)
        try:
            both = Txn((), (TxnOp("put", "c", b"1"), TxnOp("put", "d", b"2"), TxnOp("put", "e", b"3")), ())
            assert (await log.write_txn(both)).revision == 5
        finally:
            await log.aclose()

    asyncio.run(more())
    before = replayed(path)
    compact_log(path)
    after = replayed(path)
    assert after == before
    assert after[0]["c"] == (b"1", 5, 5, 1) and after[0]["e"] == (b"3", 5, 5, 1)

    async def reopened() -> None:
        log, store = await open_log(path)
        try:
            assert store.entries() == before[0]
            assert (await log.write_put("f", b"x")).sequence == 6
        finally:
            await log.aclose()

    asyncio.run(reopened())


def test_a_transaction_is_a_batch_of_its_own_and_sees_every_write_queued_before_it() -> None:
    """Writes queued in one tick around a transaction: it commits alone, after the ones before it, before the rest."""

    async def main() -> None:
        log = MemoryLog()
        sink = RecordingSink()
        await log.run(sink)
        try:
            first = log.write_put("a", b"1")
            txn = log.write_txn(Txn((Compare("a", "version", "==", 1),), (TxnOp("put", "b", b"2"),), ()))
            after = log.write_put("a", b"3")
            outcome = await txn
            assert (await first).sequence == 1
            assert (outcome.succeeded, outcome.revision) == (True, 2)
            assert (await after).sequence == 3
            assert [e.type for e in log.events] == [EventType.PUT, EventType.TXN, EventType.PUT]
            assert sum(log.statistics().batch_sizes.counts) == 3
        finally:
            await log.aclose()

    asyncio.run(main())
