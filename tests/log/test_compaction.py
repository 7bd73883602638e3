"""Compaction of the file log: offline with ``tuco log compact``, and online while writes go on."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.log.helpers import open_log, wait_until
from tuco.core.codec import (
    ENTRY_OVERHEAD,
    FORMAT_VERSION,
    HEADER_SIZE,
    decode_header,
    encode_entry,
    encode_header,
    encode_record,
)
from tuco.core.events import Event, EventType, Precondition
from tuco.core.store import Store
from tuco.errors import LogFailedError, PreconditionFailedError
from tuco.log._compaction import SYNC_EVERY_BYTES
from tuco.log._disk import _RELEASE_CUTS, _RELEASE_SLICE, lock_exclusively, release_replaced
from tuco.log.file import FileTransactionLog, LogReader, OsLogFile, SyncMode
from tuco.testing import FailingDisk, LogFileCall, RecordingLogFile


def put(sequence: int, key: str, value: bytes) -> Event:
    return Event(sequence, EventType.PUT, key, value)


async def settle(log: FileTransactionLog) -> None:
    """Wait until no compaction is in progress."""
    while log._compaction is not None:
        await asyncio.sleep(0.01)


Entries = dict[str, tuple[bytes, int, int, int]]


def replay_entries(path: Path) -> tuple[Entries, int]:
    """The entries and last sequence a restart would have, replayed without modifying the file."""
    store = Store()
    reader = LogReader(path)
    for batch in reader:
        store.apply_batch(batch)
    assert reader.report is not None
    assert reader.report.problem is None
    assert store.last_sequence == reader.report.last_sequence
    return store.entries(), reader.report.last_sequence


def replay(path: Path) -> tuple[dict[str, bytes], int]:
    """The values and last sequence a restart would have, replayed without modifying the file."""
    entries, last = replay_entries(path)
    return {key: entry[0] for key, entry in entries.items()}, last


def compacted(entries: Entries, last_sequence: int) -> bytes:
    """The exact file a compaction of ``entries`` at ``last_sequence`` writes, built from the codec by hand."""
    ordered = sorted(entries.items(), key=lambda item: item[1][2])
    marker = not ordered or ordered[-1][1][2] < last_sequence
    data = encode_header(first_sequence=last_sequence if marker else last_sequence + 1, version=FORMAT_VERSION)
    data += b"".join(
        encode_entry(key, value, created, modified, version) for key, (value, created, modified, version) in ordered
    )
    if marker:
        data += encode_record(last_sequence, EventType.DELETE, "")
    return data


def write_history(path: Path, operations: list[tuple[str, bytes | None]]) -> None:
    """Write PUTs (value) and DELETEs (None) through a real log, compaction off, and close it."""

    async def main() -> None:
        log, _ = await open_log(path, compact_min_bytes=0)
        for key, value in operations:
            if value is None:
                await log.write_delete(key)
            else:
                await log.write_put(key, value)
        await log.aclose()

    asyncio.run(main())


def churn(keys: int, rounds: int) -> list[tuple[str, bytes | None]]:
    """Every key written ``rounds`` times, then every third key deleted: mostly garbage."""
    operations: list[tuple[str, bytes | None]] = []
    for round_ in range(rounds):
        operations += [(f"key {k}", b"value %d of %d" % (round_, k) * 4) for k in range(keys)]
    operations += [(f"key {k}", None) for k in range(0, keys, 3)]
    return operations


def disk_bytes(path: Path) -> bytes:
    """The file's bytes now; blocking on purpose, as the tests want them at this point."""
    with open(path, "rb") as file:
        return file.read()


def file_size(path: Path) -> int:
    return os.stat(path).st_size


def tuco_log(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuco", "log", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tuco.log"


def test_start_up_sizes_the_live_state_from_the_stores_count_as_a_pass_over_it_would(path: Path) -> None:
    """The size the next compaction is judged against: the store's O(1) count equals the sum over the entries.

    Non-ASCII keys, rewrites and deletes; a million keys spent 0.5 s of start-up on the pass.
    """
    write_history(path, [*churn(30, 2), ("ключ", b"x" * 70), ("k\u00e9", b""), ("ключ", None), ("ж", b"yy")])

    async def main() -> tuple[int, int, int]:
        counted, store = await open_log(path, compact_min_bytes=1)
        await counted.aclose()
        summed = FileTransactionLog(path, entries=store.entries, compact_min_bytes=1)  # no store count: the pass
        async for _ in summed.read_events():
            pass
        await summed.run(store)
        await summed.aclose()
        expected = HEADER_SIZE + sum(
            ENTRY_OVERHEAD + len(key.encode()) + len(entry[0]) for key, entry in store.entries().items()
        )
        return counted._live_bytes, summed._live_bytes, expected

    counted, summed, expected = asyncio.run(main())
    assert counted == summed == expected == 1975  # 22 live keys: 20 of churn's, 'ké' and 'ж'


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_offline_compaction_keeps_state_and_last_sequence_in_fewer_bytes(path: Path) -> None:
    """`tuco log compact` leaves one entry per live key with its revisions, and a no-op DELETE carrying the last one."""
    write_history(path, churn(keys=30, rounds=10))
    entries, last = replay_entries(path)
    state = {key: entry[0] for key, entry in entries.items()}
    assert last == 310  # the delete of key 27
    assert len(state) == 20
    assert entries["key 1"] == (b"value 9 of 1" * 4, 2, 272, 10)
    before = path.stat().st_size

    result = tuco_log("compact", str(path))

    assert result.returncode == 0, result.stderr
    after = path.stat().st_size
    assert result.stdout == f"{path}: 310 events, {before} bytes -> 21 events, {after} bytes (last sequence 310)\n"
    assert replay_entries(path) == (entries, 310)
    expected = compacted(entries, 310)
    assert expected[:HEADER_SIZE] == encode_header(first_sequence=310, version=2)
    assert expected.endswith(encode_record(310, EventType.DELETE, ""))
    assert path.read_bytes() == expected
    assert after == HEADER_SIZE + sum(ENTRY_OVERHEAD + len(key) + len(value) for key, value in state.items()) + 21
    assert after < before / 10
    assert not path.with_name("tuco.log.compact").exists()
    verify = tuco_log("verify", str(path))
    assert (verify.returncode, verify.stdout) == (0, f"{path}: 21 events, last sequence 310, {after} bytes\nok\n")

    async def write_after() -> None:
        log, store = await open_log(path)
        assert store.snapshot() == state
        assert await log.write_put("new", b"1") == put(311, "new", b"1")
        await log.aclose()

    asyncio.run(write_after())
    assert replay(path) == ({**state, "new": b"1"}, 311)


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_compacting_a_log_whose_keys_are_all_deleted_keeps_the_sequence(path: Path) -> None:
    """With no live key, the compacted log is one no-op DELETE carrying the last sequence, and replays as empty."""
    write_history(path, [("a", b"1"), ("b", b"2"), ("a", None), ("b", None)])

    result = tuco_log("compact", str(path))

    assert result.returncode == 0, result.stderr
    assert path.read_bytes() == encode_header(first_sequence=4, version=2) + encode_record(4, EventType.DELETE, "")
    assert replay(path) == ({}, 4)

    async def write_after() -> None:
        log, store = await open_log(path)
        assert store.last_sequence == 4
        assert await log.write_put("c", b"3") == put(5, "c", b"3")
        await log.aclose()

    asyncio.run(write_after())
    assert replay(path) == ({"c": b"3"}, 5)


def test_offline_compaction_refuses_a_log_a_server_holds(path: Path) -> None:
    """While a running log holds the file, `tuco log compact` exits 1 saying it is locked and changes nothing."""
    write_history(path, churn(keys=5, rounds=3))

    async def main() -> None:
        log, _ = await open_log(path)
        before = disk_bytes(path)
        result = await asyncio.to_thread(tuco_log, "compact", str(path))
        assert result.returncode == 1
        assert result.stderr == f"tuco: {path}: {path} is locked by another tuco process (it holds {path.parent})\n"
        assert disk_bytes(path) == before
        await log.aclose()

    asyncio.run(main())


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_offline_compaction_refuses_a_corrupt_log(path: Path) -> None:
    """A log with a damaged middle record is not compacted (that would silently drop its later records)."""
    write_history(path, [("a", b"1"), ("b", b"2"), ("c", b"3")])
    data = bytearray(path.read_bytes())
    data[HEADER_SIZE + 22] ^= 0xFF  # the first record's value byte
    path.write_bytes(bytes(data))

    result = tuco_log("compact", str(path))

    assert result.returncode == 1
    assert "checksum mismatch at offset 24, followed by a valid record" in result.stderr
    assert f"tuco log repair {path}" in result.stderr
    assert path.read_bytes() == bytes(data)


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_offline_compaction_leaves_out_a_torn_tail(path: Path) -> None:
    """A torn last record is left out of the compacted log, as a restart would cut it, and the output says so."""
    write_history(path, [("a", b"1"), ("b", b"2"), ("a", b"3")])
    torn = encode_record(4, EventType.PUT, "torn", b"value")[:-1]
    path.write_bytes(path.read_bytes() + torn)

    result = tuco_log("compact", str(path))

    assert result.returncode == 0, result.stderr
    size = HEADER_SIZE + 2 * (ENTRY_OVERHEAD + 2)
    assert result.stdout == (
        f"{path}: left out a torn tail of {len(torn)} bytes\n"
        f"{path}: 3 events, {HEADER_SIZE + 3 * 23 + len(torn)} bytes -> 2 events, {size} bytes (last sequence 3)\n"
    )
    assert path.read_bytes() == (
        encode_header(first_sequence=4, version=2)
        + encode_entry("b", b"2", create_revision=2, mod_revision=2, version=1)
        + encode_entry("a", b"3", create_revision=1, mod_revision=3, version=2)
    )


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_torn_tail_on_a_compacted_log_is_cut_and_writing_resumes(path: Path) -> None:
    """A record torn after compaction is cut back to the last whole one, and the sequence continues from there."""
    write_history(path, churn(keys=4, rounds=5))
    assert tuco_log("compact", str(path)).returncode == 0
    state, last = replay(path)
    assert last == 22
    whole = path.read_bytes()
    path.write_bytes(whole + encode_record(23, EventType.PUT, "torn", b"value")[:-3])

    async def main() -> None:
        with capture_logs() as logs:
            log, store = await open_log(path)
        assert [(entry["event"], entry["offset"], entry["dropped_bytes"]) for entry in logs] == [
            ("log_tail_truncated", len(whole), 21 + 4 + 5 - 3)
        ]
        assert store.snapshot() == state
        assert await log.write_put("after", b"x") == put(23, "after", b"x")
        await log.aclose()

    asyncio.run(main())
    assert path.read_bytes() == whole + encode_record(23, EventType.PUT, "after", b"x")


def test_online_compaction_during_concurrent_writes_keeps_every_acknowledged_write(path: Path) -> None:
    """Writers racing repeated online compactions: state, file and a restart all match the acknowledged writes."""
    model: dict[str, bytes] = {}
    writes = 0
    uncompacted = HEADER_SIZE  # the file's size had it never been compacted

    async def writer(number: int, log: FileTransactionLog) -> None:
        nonlocal writes, uncompacted
        rng = random.Random(number)
        for i in range(150):
            key = f"w{number} k{rng.randrange(8)}"
            if rng.random() < 0.2:
                await log.write_delete(key)
                model.pop(key, None)
                uncompacted += len(encode_record(0, EventType.DELETE, key))
            else:
                value = b"%d/%d " % (number, i) * rng.randrange(1, 20)
                await log.write_put(key, value)
                model[key] = value
                uncompacted += len(encode_record(0, EventType.PUT, key, value))
            writes += 1

    async def main() -> int:
        with capture_logs() as logs:
            log, store = await open_log(path, compact_min_bytes=4096)
            await asyncio.gather(*(writer(n, log) for n in range(4)))
            assert store.snapshot() == model
            assert store.last_sequence == writes == 600
            assert log.failure is None
            # A compaction the last commit started runs to its end (closing would stop it): what is left to check
            # is the rule, not when the scheduler happened to run the last one.
            await settle(log)
            await log.aclose()
        compacted = [entry for entry in logs if entry["event"] == "log_compacted"]
        assert len(compacted) == log.compactions >= 2
        assert [entry for entry in logs if entry["event"] != "log_compacted"] == []
        assert all(entry["bytes_after"] < entry["bytes_before"] for entry in compacted)
        return int(compacted[-1]["bytes_after"])

    last_compacted_size = asyncio.run(main())
    # The promise (FileTransactionLog's docstring): no bigger than compact_ratio (2) times the file right after the
    # last compaction, else the next one would have started, or than compact_min_bytes.
    assert path.stat().st_size <= max(4096, 2 * last_compacted_size)
    assert path.stat().st_size < uncompacted / 2
    assert not path.with_name("tuco.log.compact").exists()
    assert replay(path) == (model, 600)

    async def restart() -> None:
        log, store = await open_log(path)
        assert store.snapshot() == model
        assert await log.write_delete("w0 k0") == Event(601, EventType.DELETE, "w0 k0")
        await log.aclose()

    asyncio.run(restart())


class FullOnCompaction(OsLogFile):
    """A real log file, except that the compaction's new file fills the disk after 1.5 MiB."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.budget = (3 << 19) if path.name.endswith(".compact") else None

    def write(self, data: bytes) -> None:
        if self.budget is not None:
            if len(data) > self.budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.budget -= len(data)
        super().write(data)


def test_compaction_failing_on_a_full_disk_leaves_the_log_working_and_intact(path: Path) -> None:
    """ENOSPC while writing the compacted file is logged once, the partial file removed, and writes go on."""
    value = b"v" * 4000
    history: list[Event] = []

    async def main() -> None:
        with capture_logs() as logs:
            log, store = await open_log(
                path, compact_min_bytes=3 << 20, open_file=FullOnCompaction, sync=SyncMode.EVERYSEC
            )
            # 2.4 MB live, 3.2 MB written: the compaction starts and fails half-way
            writes = [(f"k{i % 600}", value + b"%d" % i) for i in range(800)]
            history.extend(await write_through_a_failed_compaction(log, path, writes))
        failed = [entry for entry in logs if entry["event"] == "log_compaction_failed"]
        assert len(failed) == 1
        assert "No space left on device" in failed[0]["error"]
        assert [entry["event"] for entry in logs] == ["log_compaction_failed"]
        assert log.compactions == 0
        assert store.last_sequence == 801

    asyncio.run(main())
    assert not path.with_name("tuco.log.compact").exists()
    assert_holds_exactly(path, history)


async def write_through_a_failed_compaction(
    log: FileTransactionLog, path: Path, writes: list[tuple[str, bytes]]
) -> list[Event]:
    """Write ``writes`` (a compaction starts and fails meanwhile), then one more; return every event written.

    Checks that the failed compaction's file is gone and the log still takes writes, and closes the log.
    """
    history = [await log.write_put(key, value) for key, value in writes]
    await settle(log)
    assert not path.with_name("tuco.log.compact").exists()
    after = put(len(writes) + 1, "after", b"1")
    assert await log.write_put("after", b"1") == after
    assert log.failure is None
    await log.aclose()
    return [*history, after]


def assert_holds_exactly(path: Path, history: list[Event]) -> None:
    """The log at ``path`` replays to exactly ``history``, from sequence 1, cleanly."""
    reader = LogReader(path)
    assert [event for batch in reader for event in batch] == history
    assert reader.report is not None
    assert (reader.report.first_sequence, reader.report.problem) == (1, None)


class SyncFailsOnCompaction(OsLogFile):
    """A real log file, except that syncing the compaction's new file fails as a dying disk does."""

    def sync(self) -> None:
        if os.readlink(f"/proc/self/fd/{self.fd}").endswith(".compact"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().sync()


def test_a_compaction_whose_new_file_cannot_be_synced_is_dropped_and_writes_go_on(path: Path) -> None:
    """EIO from the new file's sync (every 8 MiB now, not once at the end) is logged, and nothing else changes."""
    value = b"v" * 65536
    history: list[Event] = []

    async def main() -> None:
        with capture_logs() as logs:
            log, store = await open_log(path, compact_min_bytes=1 << 20, open_file=SyncFailsOnCompaction)
            # 12.8 MiB live, 25.6 MiB written: a compaction starts and fails
            writes = [(f"k{i % 200}", value[:-4] + b"%4d" % i) for i in range(400)]
            history.extend(await write_through_a_failed_compaction(log, path, writes))
        # Each failure waits for the file to grow by compact_min_bytes (1 MiB here) before the next try.
        assert {(entry["event"], entry["error"]) for entry in logs} == {
            ("log_compaction_failed", "[Errno 5] Input/output error")
        }
        assert log.compactions == 0
        assert store.last_sequence == 401

    asyncio.run(main())
    assert_holds_exactly(path, history)


def test_compaction_that_cannot_create_its_file_is_retried_only_after_more_growth(path: Path) -> None:
    """A compaction that cannot create its file fails once, is retried only after compact_min_bytes more, and works."""
    blocker = path.with_name("tuco.log.compact")
    blocker.mkdir()  # a real failure, even as root: the new file's name is taken by a directory
    value = b"v" * 200
    record = len(encode_record(1, EventType.PUT, "same key", value))

    async def main() -> None:
        with capture_logs() as logs:
            log, store = await open_log(path, compact_min_bytes=8192)
            writes = 0

            async def write_and_settle() -> None:
                nonlocal writes
                writes += 1
                await log.write_put("same key", value + b"%d" % writes)
                await settle(log)

            while not logs:
                await write_and_settle()
            assert [entry["event"] for entry in logs] == ["log_compaction_failed"]
            assert "Is a directory" in logs[0]["error"]
            failed_at = file_size(path)
            assert failed_at == HEADER_SIZE + sum(record + len(b"%d" % n) for n in range(1, writes + 1)) > 8192
            while file_size(path) + record + 2 < failed_at + 8192:
                await write_and_settle()
            assert len(logs) == 1
            blocker.rmdir()
            await write_and_settle()
            await write_and_settle()
            assert [entry["event"] for entry in logs] == ["log_compaction_failed", "log_compacted"]
            assert log.compactions == 1
            assert log.failure is None
            assert store.snapshot() == {"same key": value + b"%d" % writes}
            await log.aclose()
        assert replay(path) == ({"same key": value + b"%d" % writes}, writes)

    asyncio.run(main())


class SlowCompaction(OsLogFile):
    """A real log file whose compaction writes wait until the test lets them go."""

    entered = threading.Event()
    release = threading.Event()

    def write(self, data: bytes) -> None:
        if os.readlink(f"/proc/self/fd/{self.fd}").endswith(".compact"):
            type(self).entered.set()
            type(self).release.wait(10)
        super().write(data)


def test_aclose_during_a_compaction_leaves_the_old_log_intact(path: Path) -> None:
    """Closing the log while a rewrite is in flight abandons it: no task left, no temporary file, old file unchanged."""
    SlowCompaction.entered.clear()
    SlowCompaction.release.clear()

    async def main() -> bytes:
        log, store = await open_log(path, compact_min_bytes=4096, open_file=SlowCompaction)
        for i in range(60):
            await log.write_put("k", b"x" * 100 + b"%d" % i)
        assert await asyncio.to_thread(SlowCompaction.entered.wait, 10)
        compaction = log._compaction
        assert compaction is not None
        rewrite = log._rewrite
        assert rewrite is not None
        closing = asyncio.create_task(log.aclose())
        await wait_until(rewrite.stop.is_set, "aclose told the compaction to stop")
        before = disk_bytes(path)
        SlowCompaction.release.set()
        await closing
        assert compaction.done()
        assert log._compaction is None
        assert log.compactions == 0
        assert store.last_sequence == 60
        return before

    with capture_logs() as logs:
        before = asyncio.run(main())
    assert logs == []
    assert path.read_bytes() == before
    assert not path.with_name("tuco.log.compact").exists()
    assert replay(path)[1] == 60


def test_a_log_replaced_between_open_and_lock_is_refused(path: Path) -> None:
    """A process that opened the log just before a compaction renamed a new file over it gets no lock on the old one."""
    write_history(path, [("a", b"1")])
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        replacement = path.with_name("replacement")
        replacement.write_bytes(encode_header())
        os.replace(replacement, path)  # what a compaction does between this open and the lock below
        with pytest.raises(LogFailedError, match="was replaced while being opened"):
            lock_exclusively(fd, path)
    finally:
        os.close(fd)
    OsLogFile(path).close()  # the file now at the path can be locked


def random_history(seed: int, operations: int, keys: int = 12) -> list[tuple[str, bytes | None]]:
    """Puts (two thirds) and deletes of a few keys, so keys are created, rewritten, deleted and created again."""
    rng = random.Random(seed)
    history: list[tuple[str, bytes | None]] = []
    for i in range(operations):
        key = f"k{rng.randrange(keys)}"
        history.append((key, None) if rng.random() < 1 / 3 else (key, b"%d:%d " % (seed, i) * rng.randrange(1, 9)))
    return history


async def write_and_close(path: Path, history: list[tuple[str, bytes | None]], **options: object) -> Store:
    """Write ``history`` through a real log and close it; return the store it committed to."""
    log, store = await open_log(path, **options)
    for key, value in history:
        if value is None:
            await log.write_delete(key)
        else:
            await log.write_put(key, value)
    await settle(log)
    await log.aclose()
    return store


@pytest.mark.slow  # runs `python -m tuco log` processes
@pytest.mark.parametrize("last", ["put", "delete"])
@pytest.mark.parametrize("seed", range(4))
def test_offline_compaction_keeps_every_entry_and_the_last_sequence(path: Path, seed: int, last: str) -> None:
    """After random puts and deletes, compacting (twice) changes no key's entry and not the store's last sequence."""
    history = [*random_history(seed, 400), ("k0", b"last") if last == "put" else ("k0", None)]
    store = asyncio.run(write_and_close(path, history, compact_min_bytes=0))
    served = (store.entries(), store.last_sequence)
    assert served[1] == 401
    assert replay_entries(path) == served

    for _ in range(2):  # a compacted log compacts to the same entries again
        result = tuco_log("compact", str(path))
        assert result.returncode == 0, result.stderr
        assert replay_entries(path) == served
        assert path.read_bytes() == compacted(store.entries(), 401)

    async def write_after() -> None:
        log, reopened = await open_log(path)
        assert (reopened.entries(), reopened.last_sequence) == served
        assert await log.write_put("k1", b"after") == put(402, "k1", b"after")
        before = served[0].get("k1")
        expected = (b"after", before[1], 402, before[3] + 1) if before else (b"after", 402, 402, 1)
        assert reopened.entries()["k1"] == expected
        await log.aclose()

    asyncio.run(write_after())


@pytest.mark.parametrize("last", ["put", "delete"])
def test_online_compactions_keep_every_entry_and_the_last_sequence(path: Path, last: str) -> None:
    """Concurrent random writers racing online compactions: a restart has exactly the entries and revision served."""

    async def writer(log: FileTransactionLog, seed: int) -> None:
        for key, value in random_history(seed, 150, keys=6):
            key = f"w{seed} {key}"
            if value is None:
                await log.write_delete(key)
            else:
                await log.write_put(key, value)

    async def main() -> tuple[Entries, int]:
        log, store = await open_log(path, compact_min_bytes=4096)
        await asyncio.gather(*(writer(log, seed) for seed in range(4)))
        await (log.write_put("w0 k0", b"last") if last == "put" else log.write_delete("w0 k0"))
        await settle(log)
        assert log.compactions >= 2
        assert log.failure is None
        await log.aclose()
        return store.entries(), store.last_sequence

    served = asyncio.run(main())
    assert served[1] == 601
    assert replay_entries(path) == served
    assert decode_header(path.read_bytes()).version == 2

    async def restart() -> None:
        log, store = await open_log(path)
        assert (store.entries(), store.last_sequence) == served
        assert await log.write_put("new", b"1") == put(602, "new", b"1")
        await log.aclose()

    asyncio.run(restart())


@pytest.mark.slow  # runs `python -m tuco log` processes
@pytest.mark.parametrize("how", ["offline", "online"])
def test_a_stale_etag_never_matches_again_after_compaction_and_restart(path: Path, how: str) -> None:
    """A key read at revision 3, rewritten at 4, refuses If-Match 3 after compaction (which once renumbered it to 3)."""
    history: list[tuple[str, bytes | None]] = [("k", b"a"), ("j", b"b"), ("k", b"c"), ("k", b"d")]
    options: dict[str, object] = {"compact_min_bytes": 0 if how == "offline" else 1}
    store = asyncio.run(write_and_close(path, history, **options))
    assert store.entries() == {"k": (b"d", 1, 4, 3), "j": (b"b", 2, 2, 1)}
    if how == "offline":
        assert tuco_log("compact", str(path)).returncode == 0
    assert decode_header(path.read_bytes()).version == 2

    async def conditional_writes() -> None:
        log, reopened = await open_log(path, compact_min_bytes=0)
        assert reopened.entries() == {"k": (b"d", 1, 4, 3), "j": (b"b", 2, 2, 1)}
        with pytest.raises(PreconditionFailedError) as refused:
            await log.write_put("k", b"lost update", Precondition(3))
        assert (refused.value.key, refused.value.current) == ("k", 4)
        assert await log.write_put("k", b"e", Precondition(4)) == put(5, "k", b"e")
        await log.aclose()

    asyncio.run(conditional_writes())
    assert replay_entries(path) == ({"k": (b"e", 1, 5, 4), "j": (b"b", 2, 2, 1)}, 5)


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_a_version_1_compacted_log_still_replays_and_compacts_to_version_2(path: Path) -> None:
    """A log compacted by an older build (PUTs renumbered, version 1) replays as before and keeps that on compaction."""
    old = encode_header(first_sequence=8) + b"".join(
        encode_record(8 + i, EventType.PUT, key, value) for i, (key, value) in enumerate([("a", b"1"), ("b", b"2")])
    )
    path.write_bytes(old + encode_record(10, EventType.PUT, "a", b"3"))
    entries = {"a": (b"3", 8, 10, 2), "b": (b"2", 9, 9, 1)}
    assert replay_entries(path) == (entries, 10)

    result = tuco_log("compact", str(path))

    assert result.returncode == 0, result.stderr
    assert path.read_bytes() == compacted(entries, 10)
    assert replay_entries(path) == (entries, 10)


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_dump_shows_each_keys_revisions_in_compacted_and_ordinary_records(path: Path) -> None:
    """`tuco log dump` prints create revision and version for every PUT, given by entries and derived after them."""
    write_history(path, [("k", b"a"), ("j", b"b"), ("k", b"c"), ("j", None)])
    assert tuco_log("compact", str(path)).returncode == 0
    write_history(path, [("k", b"d"), ("n", b"e")])

    result = tuco_log("dump", str(path))

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "3\tPUT\t'k'\tb'c'\tcreate_revision=1\tversion=2",
        "4\tDELETE\t''\tb''",
        "5\tPUT\t'k'\tb'd'\tcreate_revision=1\tversion=3",
        "6\tPUT\t'n'\tb'e'\tcreate_revision=6\tversion=1",
    ]


class SlowCompactionSync(OsLogFile):
    """A real log file whose compaction file's first sync waits until the test lets it go."""

    entered = threading.Event()
    release = threading.Event()

    def sync(self) -> None:
        if os.readlink(f"/proc/self/fd/{self.fd}").endswith(".compact") and not type(self).entered.is_set():
            type(self).entered.set()
            type(self).release.wait(10)
        super().sync()


def test_writes_go_on_while_the_compacted_file_is_synced(path: Path) -> None:
    """The rewritten state is synced before writers are held up: a write commits while that sync is in flight."""
    SlowCompactionSync.entered.clear()
    SlowCompactionSync.release.clear()

    async def main() -> int:
        log, store = await open_log(path, compact_min_bytes=4096, open_file=SlowCompactionSync)
        writes = 0
        try:
            while not SlowCompactionSync.entered.is_set():  # until the compaction syncs what it rewrote
                writes += 1
                await asyncio.wait_for(log.write_put("k", b"x" * 100 + b"%d" % writes), 5)
            written = await asyncio.wait_for(log.write_put("during", b"sync"), 5)
        finally:
            SlowCompactionSync.release.set()
        assert written == put(writes + 1, "during", b"sync")
        await settle(log)
        assert log.compactions == 1
        assert log.failure is None
        assert store.snapshot() == {"k": b"x" * 100 + b"%d" % writes, "during": b"sync"}
        await log.aclose()
        return writes

    writes = asyncio.run(main())
    assert replay(path) == ({"k": b"x" * 100 + b"%d" % writes, "during": b"sync"}, writes + 1)


class GatedCompaction(OsLogFile):
    """A real log file whose first compaction's first write waits until the test lets it go."""

    entered = threading.Event()
    release = threading.Event()

    def write(self, data: bytes) -> None:
        cls = type(self)
        if os.readlink(f"/proc/self/fd/{self.fd}").endswith(".compact") and not cls.entered.is_set():
            cls.entered.set()
            cls.release.wait(10)
        super().write(data)


def test_a_compaction_with_a_long_tail_is_not_followed_at_once_by_another(path: Path) -> None:
    """What was appended during a compaction counts as its output: the next waits until the file doubled again."""
    GatedCompaction.entered.clear()
    GatedCompaction.release.clear()
    value = b"t" * 1000

    async def main() -> None:
        log, store = await open_log(path, compact_min_bytes=4096, open_file=GatedCompaction)
        writes = 0
        while not GatedCompaction.entered.is_set():
            writes += 1
            await log.write_put("k", value + b"%d" % writes)
            await asyncio.sleep(0)
        for _ in range(100):  # about 100 KB appended while the compaction is held: its tail
            writes += 1
            await log.write_put("k", value + b"%d" % writes)
        GatedCompaction.release.set()
        await settle(log)
        assert log.compactions == 1
        after = file_size(path)
        assert after > 100_000  # one live entry and the tail
        while file_size(path) < 2 * after - 2048:  # short of twice the size just after the compaction
            writes += 1
            await log.write_put("k", value + b"%d" % writes)
            assert log._compaction is None
        assert log.compactions == 1
        while log._compaction is None and log.compactions == 1:
            writes += 1
            await log.write_put("k", value + b"%d" % writes)
        await settle(log)
        assert log.compactions == 2
        assert store.snapshot() == {"k": value + b"%d" % writes}
        await log.aclose()

    asyncio.run(main())


def test_a_compaction_syncs_its_new_file_as_it_writes_it(path: Path) -> None:
    """A sync of the log waits for what other files wrote unsynced (ext4's journal): a compaction never leaves much.

    Its 100 MB, written unsynced, held the log's syncs 25 to 35 ms once per compaction (64 KiB values).
    """
    journal: list[LogFileCall] = []
    value = b"v" * 65536
    keys = 384  # 24 MiB live: three times what the new file may hold unsynced

    def recorded(name: Path) -> RecordingLogFile:
        file = RecordingLogFile(name, journal)
        file.name += f" #{len(journal)}"  # each file apart: an adopted compaction file goes on as the log
        return file

    async def main() -> None:
        log, store = await open_log(path, compact_min_bytes=1 << 20, open_file=recorded)
        for round_ in range(3):  # the third round's file is over twice the live state: it compacts
            for first in range(0, keys, 64):
                await asyncio.gather(
                    *(log.write_put(f"key {k}", value[:-1] + b"%d" % round_) for k in range(first, first + 64))
                )
        await settle(log)
        assert log.compactions >= 1
        assert log.failure is None
        assert store.snapshot() == {f"key {k}": value[:-1] + b"2" for k in range(keys)}
        await log.aclose()

    asyncio.run(main())
    unsynced: dict[str, int] = {}
    most_unsynced = syncs = 0
    for call in journal:
        if call.operation == "write":
            unsynced[call.name] = unsynced.get(call.name, 0) + call.size
            most_unsynced = max(most_unsynced, unsynced[call.name])
        elif call.operation == "sync":
            unsynced[call.name] = 0
            syncs += call.name.startswith("tuco.log.compact")
    assert syncs >= 3  # the 24 MiB rewritten, at least two syncs on the way and one at the end
    assert SYNC_EVERY_BYTES == 8 << 20
    assert most_unsynced <= 12 << 20  # 8 MiB between syncs, plus the write that passed it (4 MiB of copied tail)
    assert replay(path) == ({f"key {k}": value[:-1] + b"2" for k in range(keys)}, 3 * keys)


def sizes_while_released(path: Path, file: OsLogFile) -> list[int]:
    """Unlink ``path`` (as the compaction's rename does), release ``file``, and return the sizes seen meanwhile."""
    watcher = os.open(path, os.O_RDONLY)
    path.unlink()
    sizes: list[int] = []
    try:
        releasing = threading.Thread(target=release_replaced, args=(file,))
        releasing.start()
        while releasing.is_alive():
            sizes.append(os.fstat(watcher).st_size)
            time.sleep(0.001)
        releasing.join()
        sizes.append(os.fstat(watcher).st_size)
    finally:
        os.close(watcher)
    return sizes


def test_a_replaced_log_gives_its_blocks_back_a_slice_at_a_time(tmp_path: Path) -> None:
    """Freed at its last close, a replaced log's blocks held the next sync 40-56 ms (300 MB): cut back first."""
    path = tmp_path / "tuco.log"
    path.write_bytes(b"r" * (3 * _RELEASE_SLICE))
    file = OsLogFile(path)
    sizes = sizes_while_released(path, file)
    assert sizes == sorted(sizes, reverse=True)
    assert set(sizes) <= {3 * _RELEASE_SLICE, 2 * _RELEASE_SLICE, _RELEASE_SLICE, 0}
    assert {2 * _RELEASE_SLICE, _RELEASE_SLICE, 0} <= set(sizes)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(file.fd)  # and closed


def test_a_large_replaced_log_is_released_in_a_bounded_number_of_cuts(tmp_path: Path) -> None:
    """16 MiB at a time, a 10 GB log would take its worker thread (and a stop) eight seconds: 32 cuts at most."""
    path = tmp_path / "tuco.log"
    total = 40 * _RELEASE_SLICE
    with path.open("wb") as created:
        created.truncate(total)  # sparse: the sizes are what the test watches
    sizes = sizes_while_released(path, OsLogFile(path))
    step = -(-total // _RELEASE_CUTS)
    assert set(sizes) <= {max(0, total - cut * step) for cut in range(_RELEASE_CUTS + 1)}
    assert sizes[-1] == 0
    assert len(set(sizes)) > 2


def test_a_replaced_log_that_another_name_still_links_is_closed_untouched(tmp_path: Path) -> None:
    """A copy an operator kept with ``ln`` is theirs: only a file with no name left is cut back."""
    path = tmp_path / "tuco.log"
    data = b"k" * (_RELEASE_SLICE + 5)
    path.write_bytes(data)
    file = OsLogFile(path)
    os.link(path, tmp_path / "kept.log")
    path.unlink()
    release_replaced(file)
    assert (tmp_path / "kept.log").read_bytes() == data
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(file.fd)


def test_the_replaced_log_is_cut_back_once_the_rename_is_durable(path: Path) -> None:
    """Released after the directory's sync: the old file, which held every write, is emptied once nothing names it."""

    async def main() -> None:
        log, _ = await open_log(path, compact_min_bytes=2048)
        watcher = os.open(path, os.O_RDONLY)  # the first file, as the compaction will leave it
        try:
            written = 0
            while log.compactions == 0:
                written += 1
                await log.write_put("same", b"x" * 100 + b"%d" % written)
            await wait_until(lambda: os.fstat(watcher).st_size == 0, "the replaced file is cut back")
        finally:
            os.close(watcher)
        await log.aclose()

    asyncio.run(main())


def test_a_replaced_log_whose_rename_may_not_be_durable_is_closed_not_cut_back(path: Path) -> None:
    """After a failed directory sync a crash may bring the old name back: its file keeps every byte."""
    disk = FailingDisk()
    disk.directory_sync_error = errno.EIO

    async def main() -> bytes:
        with capture_logs():
            log, _ = await open_log(
                path, open_file=disk.open, sync_directory=disk.sync_directory, compact_min_bytes=2048
            )
            watcher = os.open(path, os.O_RDONLY)
            try:
                written = 0
                while log.failure is None:
                    written += 1
                    with contextlib.suppress(LogFailedError):
                        await log.write_put("same", b"x" * 100 + b"%d" % written)
                await log.aclose()
                await asyncio.sleep(0.2)  # what a release would take, and more
                kept = os.pread(watcher, 1 << 20, 0)
            finally:
                os.close(watcher)
        return kept

    kept = asyncio.run(main())
    assert len(kept) > 2048  # as big as the compaction found it, and a whole log:
    (path.parent / "old.log").write_bytes(kept)
    values, last = replay(path.parent / "old.log")
    assert values == {"same": b"x" * 100 + b"%d" % last}
