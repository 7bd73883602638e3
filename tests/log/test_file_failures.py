"""The file log when its disk or its file breaks: nothing refused comes back, nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.log.helpers import disk_bytes, open_log, wait_until
from tuco.core.codec import HEADER_SIZE, encode_record
from tuco.core.events import Event, EventType
from tuco.errors import LogFailedError
from tuco.log.file import FileTransactionLog, LogReader, SyncMode
from tuco.testing import FailingDisk, LogFileCall, RecordingLogFile

ENOSPC = os.strerror(errno.ENOSPC)
EIO = os.strerror(errno.EIO)


def put(sequence: int, key: str, value: bytes) -> Event:
    return Event(sequence, EventType.PUT, key, value)


def replay(path: Path) -> tuple[dict[str, bytes], int, int]:
    """State, last sequence and dropped bytes a restart would see, read without changing the file."""
    state: dict[str, bytes] = {}
    reader = LogReader(path)
    for batch in reader:
        for event in batch:
            if event.type is EventType.PUT:
                state[event.key] = event.value
            else:
                state.pop(event.key, None)
    assert reader.report is not None
    assert reader.report.corrupt is False
    return state, reader.report.last_sequence, reader.report.dropped_bytes


def tuco_log(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuco", "log", *args], capture_output=True, text=True, timeout=60, check=False
    )


def calls(journal: list[LogFileCall]) -> list[tuple[str, str, int]]:
    return [(call.operation, call.name, call.size) for call in journal]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tuco.log"


async def write_batch(log: FileTransactionLog, count: int, value: bytes) -> list[Event | BaseException]:
    """Submit ``count`` PUTs before the committing task runs, so they form one batch."""
    return await asyncio.gather(*(log.write_put(f"k{i}", value) for i in range(count)), return_exceptions=True)


@pytest.mark.parametrize("sync", [SyncMode.ALWAYS, SyncMode.EVERYSEC])
def test_a_write_that_fills_the_disk_part_way_is_cut_back_and_never_replayed(path: Path, sync: SyncMode) -> None:
    """A batch the disk takes only part of fails all its writers, and the bytes that fit are cut off the file."""
    disk = FailingDisk()
    value = b"v" * 100
    message = (
        f"cannot write {path} ({ENOSPC}): the failed batch, sequences 2 to 6, was cut from the file and will not "
        "be replayed"
    )

    async def main() -> None:
        with capture_logs() as logs:
            log, store = await open_log(path, open_file=disk.open, sync=sync)
            assert await log.write_put("kept", b"1") == put(1, "kept", b"1")
            before = disk_bytes(path)
            disk.space_left = len(encode_record(2, EventType.PUT, "k0", value)) + 30  # one record and a bit fit
            results = await write_batch(log, 5, value)
            assert disk_bytes(path) == before
            assert [str(result) for result in results] == [message] * 5
            assert all(type(result) is LogFailedError for result in results)
            assert store.snapshot() == {"kept": b"1"}
            with pytest.raises(LogFailedError) as later:
                await log.write_put("later", b"2")
            assert str(later.value) == message
            await log.aclose()
        assert [(entry["event"], entry["error"]) for entry in logs] == [("log_failed", message)]
        size = len(before)
        assert ("fail-write", "tuco.log", 123 + 30) in calls(disk.journal)
        assert calls(disk.journal)[-1] == ("truncate", "tuco.log", size)

    asyncio.run(main())
    assert replay(path) == ({"kept": b"1"}, 1, 0)


def test_a_failed_sync_is_cut_back_so_a_restart_serves_what_was_served(path: Path) -> None:
    """In always mode a batch whose fdatasync fails is refused and cut off: a restart does not bring it back."""
    disk = FailingDisk()
    message = (
        f"cannot sync {path} ({EIO}): the failed batch, sequences 2 to 4, was cut from the file and will not "
        "be replayed"
    )

    async def main() -> None:
        with capture_logs():
            log, store = await open_log(path, open_file=disk.open)
            await log.write_put("kept", b"1")
            before = disk_bytes(path)
            disk.sync_error = errno.EIO
            results = await write_batch(log, 3, b"refused")
            assert disk_bytes(path) == before
            assert [str(result) for result in results] == [message] * 3
            assert store.snapshot() == {"kept": b"1"}
            await log.aclose()

    asyncio.run(main())
    assert replay(path) == ({"kept": b"1"}, 1, 0)

    async def restart() -> None:
        log, store = await open_log(path)
        assert store.snapshot() == {"kept": b"1"}
        assert await log.write_put("next", b"2") == put(2, "next", b"2")
        await log.aclose()

    asyncio.run(restart())


@pytest.mark.slow  # runs `python -m tuco log` processes
def test_a_batch_that_cannot_be_cut_makes_the_next_start_refuse_until_repaired(path: Path) -> None:
    """When the failed batch cannot be cut off, it is recorded, start-up refuses, and repair cuts exactly that batch."""
    disk = FailingDisk()
    size = 0

    async def main() -> None:
        nonlocal size
        with capture_logs():
            log, _ = await open_log(path, open_file=disk.open)
            await log.write_put("kept", b"1")
            size = len(disk_bytes(path))
            disk.sync_error = disk.truncate_error = errno.EIO
            results = await write_batch(log, 2, b"refused")
            assert [str(result) for result in results] == [
                f"cannot sync {path} ({EIO}), and cutting the failed batch, sequences 2 to 3, back to offset {size} "
                f"failed too ({EIO}): it was not acknowledged, and the next start refuses until an operator runs "
                f"'tuco log repair {path}' to cut it"
            ] * 2
            await log.aclose()

    asyncio.run(main())
    assert len(disk_bytes(path)) > size  # the refused batch is still in the file

    async def refused_start() -> None:
        with pytest.raises(LogFailedError) as refused:
            await open_log(path)
        assert str(refused.value) == (
            f"{path}: the last run could not cut off sequences 2 to 3 (from offset {size}), whose writers were told "
            f"they were not stored; refusing to start until an operator decides: 'tuco log repair {path}' cuts "
            f"them, deleting {path}.refused keeps them"
        )

    asyncio.run(refused_start())
    verify = tuco_log("verify", str(path))
    assert (verify.returncode, verify.stdout.splitlines()[1:]) == (
        1,
        [
            f"refused: sequences 2 to 3 from offset {size} were refused to their writers but are still in the file; "
            f"'tuco log repair {path}' cuts them"
        ],
    )
    compact = tuco_log("compact", str(path))
    assert (compact.returncode, compact.stderr) == (
        1,
        f"tuco: {path}: sequences 2 to 3 (from offset {size}) were refused to their writers but are still in the "
        f"log; refusing to compact. Cut them with 'tuco log repair {path}'\n",
    )
    before_repair = len(disk_bytes(path))
    repair = tuco_log("repair", str(path))
    assert (repair.returncode, repair.stdout) == (
        0,
        f"{path}: kept 1 events (last sequence 1); dropped {before_repair - size} bytes from offset {size} "
        "(sequences 2 to 3 never acknowledged)\n",
    )
    assert len(disk_bytes(path)) == size
    assert not (path.parent / "tuco.log.refused").exists()
    assert replay(path) == ({"kept": b"1"}, 1, 0)


def test_a_batch_that_can_be_neither_cut_nor_recorded_says_it_may_come_back(path: Path) -> None:
    """When neither the cut nor its record for the next start works, the error says the batch may be replayed."""
    disk = FailingDisk()
    blocker = path.parent / "tuco.log.refused"

    async def main() -> None:
        with capture_logs():
            log, _ = await open_log(path, open_file=disk.open)
            await log.write_put("kept", b"1")
            os.mkdir(blocker)  # a real failure, even as root: the record's name is taken by a directory
            size = len(disk_bytes(path))
            disk.sync_error = disk.truncate_error = errno.EIO
            results = await write_batch(log, 1, b"refused")
            assert [str(result) for result in results] == [
                f"cannot sync {path} ({EIO}), and cutting the failed batch, sequence 2, back to offset {size} "
                f"failed too ({EIO}), as did recording that for the next start (Is a directory): it was not "
                "acknowledged, but a restart may replay it"
            ]
            await log.aclose()

    asyncio.run(main())


def test_always_mode_syncs_every_batch_before_acknowledging_it(path: Path) -> None:
    """Each acknowledged write was written and then synced, to the byte, before its write_put returned."""
    journal: list[LogFileCall] = []

    async def main() -> None:
        log, _ = await open_log(path, open_file=lambda p: RecordingLogFile(p, journal))
        for i in range(1, 4):
            event = await log.write_put(f"k{i}", b"value")
            journal.append(LogFileCall("ack", str(event.sequence), 0, 0.0))
        await log.aclose()

    asyncio.run(main())
    record = len(encode_record(1, EventType.PUT, "k1", b"value"))
    expected: list[tuple[str, str, int]] = []
    for i in range(1, 4):
        expected += [("write", "tuco.log", record), ("sync", "tuco.log", HEADER_SIZE + i * record), ("ack", str(i), 0)]
    assert calls(journal)[: len(expected)] == expected


def test_everysec_timer_syncs_acknowledged_writes_without_being_asked(path: Path) -> None:
    """In everysec mode a write is acknowledged before any sync, and the timer then syncs it on its own."""
    journal: list[LogFileCall] = []

    async def main() -> None:
        log, _ = await open_log(
            path, open_file=lambda p: RecordingLogFile(p, journal), sync=SyncMode.EVERYSEC, sync_interval=0.02
        )
        await log.write_put("k", b"v")
        size = HEADER_SIZE + len(encode_record(1, EventType.PUT, "k", b"v"))
        assert calls(journal) == [("write", "tuco.log", size - HEADER_SIZE)]
        await wait_until(lambda: ("sync", "tuco.log", size) in calls(journal), "the timer synced the write")
        await log.aclose()

    asyncio.run(main())


def test_everysec_failed_sync_stops_the_log_and_says_which_writes_may_be_lost(path: Path) -> None:
    """A failed timer sync fails the log, naming the acknowledged writes that may not be on disk; they stay put."""
    disk = FailingDisk()
    message = (
        f"cannot sync {path} ({EIO}): the writes acknowledged since the last good sync, sequences 2 to 3, may not "
        "be on disk; a restart replays what the file still holds"
    )

    async def main() -> None:
        with capture_logs() as logs:
            log, store = await open_log(path, open_file=disk.open, sync=SyncMode.EVERYSEC, sync_interval=0.02)
            await log.write_put("a", b"1")
            synced = len(disk_bytes(path))
            await wait_until(lambda: ("sync", "tuco.log", synced) in calls(disk.journal), "the first sync")
            disk.sync_error = errno.EIO
            assert await log.write_put("b", b"2") == put(2, "b", b"2")
            assert await log.write_put("c", b"3") == put(3, "c", b"3")
            await wait_until(lambda: log.failure is not None, "the failed sync fails the log")
            assert str(log.failure) == message
            with pytest.raises(LogFailedError) as later:
                await log.write_put("d", b"4")
            assert str(later.value) == message
            assert store.snapshot() == {"a": b"1", "b": b"2", "c": b"3"}
            await log.aclose()
        assert [(entry["event"], entry["error"]) for entry in logs] == [("log_failed", message)]

    asyncio.run(main())
    assert replay(path) == ({"a": b"1", "b": b"2", "c": b"3"}, 3, 0)


def test_a_failed_directory_sync_after_compaction_stops_the_log(path: Path) -> None:
    """If the directory cannot be synced after the compacted file is renamed in, the log fails rather than carry on."""
    disk = FailingDisk()
    disk.directory_sync_error = errno.EIO

    async def main() -> dict[str, bytes]:
        with capture_logs():
            log, store = await open_log(
                path, open_file=disk.open, sync_directory=disk.sync_directory, compact_min_bytes=2048
            )
            written = 0
            while log.failure is None and written < 1000:
                written += 1
                try:
                    await log.write_put("same", b"x" * 100 + b"%d" % written)
                except LogFailedError:
                    break
            assert str(log.failure) == f"cannot sync the directory of {path} ({EIO}) after compacting the log"
            with pytest.raises(LogFailedError):
                await log.write_put("later", b"1")
            state = store.snapshot()
            await log.aclose()
            return state

    state = asyncio.run(main())
    assert replay(path)[0] == state


def test_removing_the_log_file_stops_acknowledging_writes(path: Path) -> None:
    """A write after the log file was deleted is refused, and the log fails instead of writing into a lost file."""

    async def main() -> None:
        with capture_logs():
            log, store = await open_log(path)
            await log.write_put("a", b"1")
            os.unlink(path)
            with pytest.raises(LogFailedError) as refused:
                await log.write_put("b", b"2")
            assert str(refused.value) == (
                f"{path} no longer names the log file this process has open (removed or replaced): the failed "
                "batch, sequence 2, was cut from the file and will not be replayed"
            )
            assert log.failure is refused.value
            assert store.snapshot() == {"a": b"1"}
            await log.aclose()

    asyncio.run(main())


def test_a_log_file_moved_away_keeps_exactly_what_was_acknowledged(path: Path, tmp_path: Path) -> None:
    """After the log is renamed away, the refused write is cut from it, so the moved file replays the served state."""
    moved = tmp_path / "moved.log"

    async def main() -> None:
        with capture_logs():
            log, store = await open_log(path)
            await log.write_put("a", b"1")
            os.rename(path, moved)
            with pytest.raises(LogFailedError, match="no longer names the log file"):
                await log.write_put("b", b"2")
            assert store.snapshot() == {"a": b"1"}
            await log.aclose()

    asyncio.run(main())
    assert replay(moved) == ({"a": b"1"}, 1, 0)
    assert not path.exists()


def test_an_idle_log_notices_its_file_was_replaced(path: Path, tmp_path: Path) -> None:
    """With no writes coming, the log still notices within its check interval that its file was replaced."""

    async def main() -> None:
        with capture_logs() as logs:
            log, _ = await open_log(path, watch_interval=0.02)
            await log.write_put("a", b"1")
            replacement = tmp_path / "replacement"
            replacement.write_bytes(disk_bytes(path))
            os.replace(replacement, path)
            await wait_until(lambda: log.failure is not None, "the log notices the replacement")
            assert str(log.failure) == (
                f"{path} no longer names the log file this process has open (removed or replaced): writes stopped"
            )
            await log.aclose()
        assert [entry["event"] for entry in logs] == ["log_failed"]

    asyncio.run(main())


def test_a_second_log_is_refused_after_the_first_ones_file_was_removed(path: Path) -> None:
    """The lock is on the data directory, so deleting the log file does not let a second process in."""

    async def main() -> None:
        with capture_logs():
            log, _ = await open_log(path)
            await log.write_put("a", b"1")
            os.unlink(path)
            with pytest.raises(LogFailedError) as refused:
                await open_log(path)
            assert str(refused.value) == f"{path} is locked by another tuco process (it holds {path.parent})"
            await log.aclose()

    asyncio.run(main())
    assert not path.exists()


def open_in_a_thread(path: Path) -> BaseException | None:
    """Open a log on ``path`` in a thread; if it blocks on a FIFO, unblock it by opening the reading end."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        async def main() -> None:
            log = FileTransactionLog(path)
            try:
                await log.open()
            finally:
                await log.aclose()

        try:
            asyncio.run(main())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        thread.join(10)
        os.close(fd)
        raise AssertionError(f"opening a log on {path} blocked")
    return outcome[0]


def test_a_fifo_at_the_log_path_is_refused_without_blocking(path: Path) -> None:
    """A named pipe where the log should be is refused at once, naming the path and what is there."""
    os.mkfifo(path)
    error = open_in_a_thread(path)
    assert type(error) is LogFailedError
    assert str(error) == f"{path} is a FIFO (named pipe), not a regular file: refusing to use it as the log"


def test_a_directory_at_the_log_path_is_refused(path: Path) -> None:
    """A directory where the log should be is refused, naming the path and what is there."""
    path.mkdir()
    error = open_in_a_thread(path)
    assert type(error) is LogFailedError
    assert str(error) == f"{path} is a directory, not a regular file: refusing to use it as the log"


def test_a_data_directory_that_is_a_file_is_named(tmp_path: Path) -> None:
    """A data directory path that holds a regular file gives a message naming it, not 'File exists'."""
    data = tmp_path / "data"
    data.write_bytes(b"not a directory")
    error = open_in_a_thread(data / "tuco.log")
    assert type(error) is LogFailedError
    assert str(error) == f"the data directory {data} (TUCO_DATA_DIR) is a regular file, not a directory"


def test_a_batch_with_large_values_that_fills_the_disk_part_way_is_cut_back(path: Path) -> None:
    """Large values reach a failing disk's write like any other bytes: the batch fails whole and is cut off."""
    disk = FailingDisk()
    value = b"L" * (64 << 10)

    async def main() -> None:
        with capture_logs():
            log, store = await open_log(path, open_file=disk.open)
            assert await log.write_put("kept", value) == put(1, "kept", value)
            before = disk_bytes(path)
            disk.space_left = len(value) + 4096  # the first large record and a bit of the second fit
            results = await write_batch(log, 3, value)
            assert all(type(result) is LogFailedError for result in results)
            assert disk_bytes(path) == before
            assert store.snapshot() == {"kept": value}
            await log.aclose()
        assert ("fail-write", "tuco.log", len(value) + 4096) in calls(disk.journal)

    asyncio.run(main())
    assert replay(path) == ({"kept": value}, 1, 0)


def test_a_batch_with_large_values_is_on_disk_exactly_as_its_records(path: Path) -> None:
    """Written with writev from separate buffers, a batch of large and small values is the same bytes as ever."""
    large = bytes(range(256)) * 256

    async def main() -> list[Event]:
        log, _ = await open_log(path)
        events = await asyncio.gather(*(log.write_put(f"k{i}", large if i % 2 else b"small") for i in range(5)))
        await log.aclose()
        return list(events)

    events = asyncio.run(main())
    expected = b"".join(encode_record(e.sequence, e.type, e.key, e.value) for e in events)
    assert disk_bytes(path)[HEADER_SIZE:] == expected
    assert replay(path) == ({f"k{i}": large if i % 2 else b"small" for i in range(5)}, 5, 0)
