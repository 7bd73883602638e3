"""Deadlines and leases in the file log: replay, online compaction, and the torn-tail and corruption rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.log.helpers import disk_bytes, wait_until
from tuco.core.codec import HEADER_SIZE
from tuco.core.events import EventType, Expiry
from tuco.core.store import Store
from tuco.log.file import FileTransactionLog, LogReader

HOUR = 3_600_000


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tuco.log"


async def open_log(path: Path, **options: object) -> tuple[FileTransactionLog, Store]:
    """Replay into a new store and run, with compaction rewriting from the store's entries and expiry state."""
    store = Store()
    log = FileTransactionLog(path, entries=store.entries, **options)  # type: ignore[arg-type]
    log.expiry_state = store.expiry_state
    async for batch in log.read_events():
        store.apply_batch(batch)
    await log.run(store)
    return log, store


async def write_expiring_state(log: FileTransactionLog) -> int:
    """A key with its own deadline, a lease with a key, an owned lease with a key, a plain key; the first lease."""
    await log.write_expiring(EventType.PUT, "own", b"o", None, Expiry(ttl=HOUR))
    grant = await log.write_expiring(EventType.LEASE_GRANT, "", expiry=Expiry(ttl=HOUR))
    await log.write_expiring(EventType.PUT, "leased", b"l", None, Expiry(lease=grant.lease))
    owned = await log.write_expiring(EventType.LEASE_GRANT, "", b"dns:svc-a", expiry=Expiry(ttl=HOUR))
    await log.write_expiring(EventType.PUT, "owned", b"o", None, Expiry(lease=owned.lease))
    await log.write_put("plain", b"p")
    return grant.lease


def test_deadlines_and_leases_survive_a_reopen(path: Path) -> None:
    """The file replays each key's deadline and lease and each lease's ttl and deadline exactly."""

    async def main() -> None:
        log, store = await open_log(path, compact_min_bytes=0)
        lease = await write_expiring_state(log)
        await log.write_expiring(EventType.LEASE_KEEPALIVE, "", expiry=Expiry(lease=lease))
        before = (store.entries(), store.expiry_state(), store.last_sequence)
        await log.aclose()
        log, again = await open_log(path, compact_min_bytes=0)
        assert (again.entries(), again.expiry_state(), again.last_sequence) == before
        await log.aclose()

    asyncio.run(main())


def test_online_compaction_keeps_deadlines_and_leases(path: Path) -> None:
    """Churn until the log compacts online twice: the deadlines, leases and revisions replay as they were served."""

    async def main() -> None:
        log, store = await open_log(path, compact_min_bytes=4096)
        lease = await write_expiring_state(log)
        for n in range(400):
            await log.write_put("churn", b"x" * 64 + b"%d" % n)
            if n == 200:
                await log.write_expiring(EventType.LEASE_KEEPALIVE, "", expiry=Expiry(lease=lease))
        await wait_until(lambda: log.compactions >= 2 and log._compaction is None, "two compactions")
        before = (store.entries(), store.expiry_state(), store.last_sequence)
        assert store.lease(lease) is not None and store.key_expiry("own") is not None
        await log.aclose()
        assert disk_bytes(path)[8:12] == b"\x02\x00\x00\x00"  # a version 2 file: it was compacted
        log, again = await open_log(path, compact_min_bytes=0)
        assert (again.entries(), again.expiry_state(), again.last_sequence) == before
        await log.aclose()

    asyncio.run(main())


def test_a_torn_expiring_record_is_cut_and_a_damaged_one_before_valid_records_is_corruption(path: Path) -> None:
    """The tail rules hold for the new kinds: half an expiring PUT is cut; damage followed by one is corruption."""

    async def main() -> None:
        log, _ = await open_log(path, compact_min_bytes=0)
        await log.write_put("a", b"1")
        await log.write_expiring(EventType.PUT, "b", b"2", None, Expiry(ttl=HOUR))
        await log.write_expiring(EventType.LEASE_GRANT, "", expiry=Expiry(ttl=HOUR))
        await log.aclose()

    asyncio.run(main())
    whole = disk_bytes(path)
    first = 21 + 1 + 1  # a PUT record of key "a", value "1"
    path.write_bytes(whole[:-10])  # the grant record torn
    reader = LogReader(path)
    events = [event for batch in reader for event in batch]
    assert [(e.sequence, e.type, e.key, e.deadline > 0) for e in events] == [
        (1, EventType.PUT, "a", False),
        (2, EventType.PUT, "b", True),
    ]
    assert reader.report is not None and not reader.report.corrupt and reader.report.problem
    damaged = bytearray(whole)
    damaged[HEADER_SIZE + first + 12] ^= 0xFF  # inside the expiring PUT, which a valid grant follows
    path.write_bytes(bytes(damaged))
    reader = LogReader(path)
    assert [event.key for batch in reader for event in batch] == ["a"]
    assert reader.report is not None and reader.report.corrupt
    assert reader.report.problem == (
        f"checksum mismatch at offset {HEADER_SIZE + first}, "
        f"followed by a valid record at offset {HEADER_SIZE + first + 21 + 16 + 2}"  # the expiring PUT's 39 bytes
    )
