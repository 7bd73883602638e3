from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.log.helpers import cancel_while_it_stops, open_log, wait_until
from tuco.core.codec import HEADER_SIZE, encode_header, encode_record
from tuco.core.events import Event, EventType
from tuco.core.store import Store
from tuco.errors import LogClosedError, LogCorruptError, LogFailedError, LogFormatError
from tuco.log.file import FileTransactionLog, LogReader, OsLogFile, SyncMode, repair_log
from tuco.testing import FailingDisk, LogFileCall, RecordingLogFile, RecordingSink


def put(sequence: int, key: str, value: bytes) -> Event:
    return Event(sequence, EventType.PUT, key, value)


def read_back(path: Path) -> list[Event]:
    """Every event in the file, read without modifying it."""
    reader = LogReader(path)
    events = [event for batch in reader for event in batch]
    assert reader.report is not None
    assert reader.report.dropped_bytes == 0
    return events


def write_events(path: Path, events: list[tuple[str, bytes | None]]) -> list[Event]:
    """Write PUTs (value) and DELETEs (None) through a real log and close it."""

    async def main() -> list[Event]:
        log, _ = await open_log(path)
        written = []
        for key, value in events:
            if value is None:
                written.append(await log.write_delete(key))
            else:
                written.append(await log.write_put(key, value))
        await log.aclose()
        return written

    return asyncio.run(main())


def disk_bytes(path: Path) -> bytes:
    """The file's bytes through a separate open; blocking on purpose, as the tests want them now."""
    with open(path, "rb") as file:
        return file.read()


def append_bytes(path: Path, data: bytes) -> None:
    """Append ``data`` through a separate open, as another process would."""
    with open(path, "ab") as file:
        file.write(data)


def record_bytes(events: list[Event]) -> list[bytes]:
    return [encode_record(e.sequence, e.type, e.key, e.value) for e in events]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tuco.log"


@pytest.fixture
def failing_disk() -> FailingDisk:
    return FailingDisk()


def test_new_log_is_created_with_a_header(path: Path) -> None:
    """Opening a missing log creates it holding just the header, and replays nothing."""

    async def main() -> None:
        log, store = await open_log(path)
        assert store.snapshot() == {}
        assert log.describe() == {"backend": "file", "last_sequence": 0, "sync": "always"}
        await log.aclose()

    asyncio.run(main())
    assert path.read_bytes() == encode_header()


def test_written_events_replay_exactly(path: Path) -> None:
    """A fresh log on the same file replays exactly the events written, and the same state."""
    written = write_events(
        path, [("a", b"1"), ("b b", b""), ("line\nbreak", b"\x00\xff"), ("a", b"2"), ("b b", None), ("🔑", b"v")]
    )
    assert [e.sequence for e in written] == [1, 2, 3, 4, 5, 6]
    assert path.read_bytes() == encode_header() + b"".join(record_bytes(written))

    async def main() -> None:
        log = FileTransactionLog(path)
        replayed = [event for batch in [b async for b in log.read_events()] for event in batch]
        assert replayed == written
        store = Store()
        for event in replayed:
            store.apply(event)
        assert store.snapshot() == {"a": b"2", "line\nbreak": b"\x00\xff", "🔑": b"v"}
        await log.aclose()

    asyncio.run(main())


def test_sequences_continue_across_restarts(path: Path) -> None:
    """After a restart, new writes continue the sequence where the file left off."""
    first = write_events(path, [("a", b"1"), ("b", b"2"), ("c", b"3")])
    second = write_events(path, [("d", b"4"), ("a", None)])
    assert [e.sequence for e in first + second] == [1, 2, 3, 4, 5]
    assert read_back(path) == first + second

    async def main() -> None:
        log, store = await open_log(path)
        assert store.snapshot() == {"b": b"2", "c": b"3", "d": b"4"}
        assert store.last_sequence == 5
        assert log.describe()["last_sequence"] == 5
        await log.aclose()

    asyncio.run(main())


async def reopen_and_write(path: Path) -> tuple[list[Event], int, Event]:
    """Replay ``path`` (recording what it yields and the file size after), write one PUT and close."""
    log = FileTransactionLog(path)
    replayed = [event async for batch in log.read_events() for event in batch]
    size_after_replay = len(disk_bytes(path))
    store = Store()
    for event in replayed:
        store.apply(event)
    await log.run(store)
    event = await log.write_put("after", b"crash")
    await log.aclose()
    return replayed, size_after_replay, event


def test_torn_tail_at_every_byte_offset_is_cut(path: Path, tmp_path: Path) -> None:
    """A crash at any byte inside the last record loses only that record, with a warning, and writing resumes."""
    written = write_events(path, [("first", b"1"), ("second", b"22"), ("third", b"333"), ("last", b"the end")])
    original = path.read_bytes()
    last_start = HEADER_SIZE + sum(len(r) for r in record_bytes(written[:-1]))
    assert len(original) - last_start == len(record_bytes(written)[-1]) == 21 + 4 + 7

    for cut in range(last_start + 1, len(original)):
        copy = tmp_path / f"cut-{cut}.log"
        copy.write_bytes(original[:cut])
        with capture_logs() as logs:
            replayed, size_after_replay, event = asyncio.run(reopen_and_write(copy))
        assert replayed == written[:-1], cut
        assert size_after_replay == last_start, cut
        assert logs == [
            {
                "event": "log_tail_truncated",
                "log_level": "warning",
                "path": str(copy),
                "dropped_bytes": cut - last_start,
                "offset": last_start,
                "reason": "incomplete record",
            }
        ], cut
        assert event == put(4, "after", b"crash")
        assert copy.read_bytes() == original[:last_start] + record_bytes([event])[0]
        assert read_back(copy) == [*written[:-1], event]
        copy.unlink()

    # Cut exactly between records: nothing is torn and nothing is said.
    clean = tmp_path / "clean.log"
    clean.write_bytes(original[:last_start])
    with capture_logs() as logs:
        replayed, size_after_replay, event = asyncio.run(reopen_and_write(clean))
    assert logs == []
    assert replayed == written[:-1]
    assert size_after_replay == last_start
    assert event == put(4, "after", b"crash")


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"this is not a record at all, just text", "record length 1936287860 is impossible"),
        (b"short junk", "incomplete record"),
        (bytes(4096), "record length 0 is impossible"),
        (b"\xff" * 64, "record length 4294967295 is impossible"),
    ],
    ids=["garbage", "short", "zeros", "ones"],
)
def test_junk_after_the_last_record_is_cut_with_a_warning(path: Path, tail: bytes, reason: str) -> None:
    """Garbage or a zero-filled tail after the last record is cut back to that record, with a warning."""
    written = write_events(path, [("a", b"1"), ("b", b"2")])
    clean = path.read_bytes()
    path.write_bytes(clean + tail)

    async def main() -> None:
        with capture_logs() as logs:
            log, store = await open_log(path)
        assert logs == [
            {
                "event": "log_tail_truncated",
                "log_level": "warning",
                "path": str(path),
                "dropped_bytes": len(tail),
                "offset": len(clean),
                "reason": reason,
            }
        ]
        assert disk_bytes(path) == clean
        assert store.snapshot() == {"a": b"1", "b": b"2"}
        assert await log.write_put("c", b"3") == put(3, "c", b"3")
        await log.aclose()

    asyncio.run(main())
    assert read_back(path) == [*written, put(3, "c", b"3")]


def test_flipped_byte_in_a_middle_record_is_corruption_and_repair_cuts_before_it(path: Path) -> None:
    """A damaged record followed by good ones stops start-up, naming the offset; repair keeps the prefix."""
    written = write_events(path, [("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4"), ("e", b"5")])
    records = record_bytes(written)
    bad_start = HEADER_SIZE + len(records[0]) + len(records[1])
    data = bytearray(path.read_bytes())
    data[bad_start + len(records[2]) - 1] ^= 0x40  # the value byte of record 3
    path.write_bytes(bytes(data))

    async def main() -> None:
        log = FileTransactionLog(path)
        with pytest.raises(LogCorruptError) as info:
            async for _ in log.read_events():
                pass
        await log.aclose()
        message = str(info.value)
        assert f"checksum mismatch at offset {bad_start}" in message
        assert f"followed by a valid record at offset {bad_start + len(records[2])}" in message
        assert f"tuco log repair {path}" in message

    asyncio.run(main())
    assert path.read_bytes() == bytes(data), "a refused log must be left untouched"

    report = repair_log(path)
    assert report.corrupt is True
    assert report.valid_bytes == bad_start
    assert report.file_bytes == len(data)
    assert report.events == 2
    assert report.last_sequence == 2
    assert path.read_bytes() == bytes(data[:bad_start])

    async def after_repair() -> None:
        with capture_logs() as logs:
            log, store = await open_log(path)
        assert logs == []
        assert store.snapshot() == {"a": b"1", "b": b"2"}
        assert await log.write_put("f", b"6") == put(3, "f", b"6")
        await log.aclose()

    asyncio.run(after_repair())
    assert read_back(path) == [*written[:2], put(3, "f", b"6")]


@pytest.mark.parametrize(
    "content",
    [b"", b"TUCOLOG", b"just some text file that is long enough", encode_header(version=99)],
    ids=["empty", "short", "text", "future-version"],
)
def test_file_that_is_not_a_tuco_log_is_refused_untouched(path: Path, content: bytes) -> None:
    """A file that is not a tuco log (or is from a future version) raises LogFormatError and is not modified."""
    path.write_bytes(content)

    async def main() -> None:
        log = FileTransactionLog(path)
        with pytest.raises(LogFormatError):
            async for _ in log.read_events():
                pass
        await log.aclose()

    asyncio.run(main())
    assert path.read_bytes() == content


def test_group_commit_sequences_in_submission_order_in_few_batches(path: Path) -> None:
    """200 concurrent writes get sequences 1..200 in submission order, are applied in that order, in few batches."""

    async def main() -> None:
        log = FileTransactionLog(path)
        async for _ in log.read_events():
            pass
        sink = RecordingSink()
        store, applied = sink.store, sink.events
        await log.run(sink)
        events = await asyncio.gather(*(log.write_put(f"k{i}", b"%d" % i) for i in range(200)))
        assert events == [put(i + 1, f"k{i}", b"%d" % i) for i in range(200)]
        assert applied == events
        assert store.last_sequence == 200
        assert store.snapshot() == {f"k{i}": b"%d" % i for i in range(200)}
        assert 1 <= log._commits.batches < 200
        await log.aclose()

    asyncio.run(main())
    assert [e.sequence for e in read_back(path)] == list(range(1, 201))


def test_acknowledged_write_is_in_the_file(path: Path) -> None:
    """When write_put returns, its record is already in the file as another reader sees it."""

    async def main() -> None:
        log, _ = await open_log(path)
        for i in range(1, 6):
            assert await log.write_put(f"key{i}", b"value") == put(i, f"key{i}", b"value")
            assert disk_bytes(path).endswith(encode_record(i, EventType.PUT, f"key{i}", b"value"))
        assert await log.write_delete("key1") == Event(6, EventType.DELETE, "key1")
        assert disk_bytes(path).endswith(encode_record(6, EventType.DELETE, "key1"))
        await log.aclose()

    asyncio.run(main())


def test_everysec_writes_are_replayable_after_aclose(path: Path) -> None:
    """In everysec mode, writes acknowledged before aclose are all in the file afterwards."""

    journal: list[LogFileCall] = []

    async def main() -> list[Event]:
        log, store = await open_log(
            path, sync=SyncMode.EVERYSEC, sync_interval=0.01, open_file=lambda p: RecordingLogFile(p, journal)
        )
        assert log.describe()["sync"] == "everysec"
        events = list(await asyncio.gather(*(log.write_put(f"k{i}", b"v") for i in range(20))))
        await wait_until(lambda: any(call.operation == "sync" for call in journal), "the timer synced while running")
        events.append(await log.write_delete("k0"))
        await log.aclose()
        assert store.last_sequence == 21
        return events

    events = asyncio.run(main())
    assert read_back(path) == events
    assert [e.sequence for e in events] == list(range(1, 22))


def test_a_cancel_of_aclose_reaches_its_caller_and_a_second_aclose_finishes(path: Path) -> None:
    """aclose cancelled while it stops the sync timer raises CancelledError; closing again closes the file."""

    async def main() -> None:
        log, _ = await open_log(path, sync=SyncMode.EVERYSEC, sync_interval=0.01, watch_interval=0)
        assert await log.write_put("k", b"v") == put(1, "k", b"v")
        assert await cancel_while_it_stops(log.aclose(), lambda: log._sync_task)
        await log.aclose()
        reopened, store = await open_log(path)  # the lock was released: the file opens again
        assert store.last_sequence == 1
        await reopened.aclose()

    asyncio.run(main())


def test_failing_disk_stops_the_log_and_loses_nothing_acknowledged(path: Path, failing_disk: FailingDisk) -> None:
    """When a write fails, it and every later write raise LogFailedError, and the failed value is never visible."""

    async def main() -> None:
        log, store = await open_log(path, open_file=failing_disk.open)
        assert await log.write_put("good", b"1") == put(1, "good", b"1")
        failing_disk.space_left = 10
        with capture_logs() as logs, pytest.raises(LogFailedError) as failed:
            await log.write_put("bad", b"2")
        assert str(failed.value) == (
            f"cannot write {path} (No space left on device): the failed batch, sequence 2, was cut from the file "
            "and will not be replayed"
        )
        assert [entry["event"] for entry in logs] == ["log_failed"]
        assert log.failure is failed.value
        failing_disk.space_left = None  # the disk recovering must not revive the log
        with pytest.raises(LogFailedError):
            await log.write_put("later", b"3")
        with pytest.raises(LogFailedError):
            await log.write_delete("good")
        assert store.snapshot() == {"good": b"1"}
        assert store.last_sequence == 1
        await log.aclose()

    asyncio.run(main())
    assert read_back(path) == [put(1, "good", b"1")]

    async def restart() -> None:
        log, store = await open_log(path)
        assert store.snapshot() == {"good": b"1"}
        assert await log.write_put("next", b"4") == put(2, "next", b"4")
        await log.aclose()

    asyncio.run(restart())


def test_failing_disk_fails_every_queued_write(path: Path, failing_disk: FailingDisk) -> None:
    """Writes in and queued behind a failing batch all raise LogFailedError; none is applied."""

    async def main() -> None:
        log, store = await open_log(path, open_file=failing_disk.open)
        failing_disk.space_left = 0
        first = log.write_put("first", b"v")
        await asyncio.sleep(0)  # the committing task takes the first batch; the rest queue behind it
        results = await asyncio.gather(
            first, *(log.write_put(f"k{i}", b"v") for i in range(20)), return_exceptions=True
        )
        assert all(type(result) is LogFailedError for result in results)
        assert store.snapshot() == {}
        await log.aclose()

    with capture_logs():
        asyncio.run(main())
    assert read_back(path) == []


def test_back_pressure_makes_writers_wait_not_fail(path: Path) -> None:
    """With a tiny queue bound every concurrent write still succeeds, and the queue overshoots by at most one record."""
    bound = 100
    value = b"x" * 60
    record_size = len(encode_record(1, EventType.PUT, "k000", value))

    async def main() -> None:
        log, store = await open_log(path, max_pending_bytes=bound)
        peak = 0
        done = False

        async def observe() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, log._commits.pending_bytes)
                await asyncio.sleep(0)

        observer = asyncio.create_task(observe())
        events = await asyncio.gather(*(log.write_put(f"k{i:03}", value) for i in range(60)))
        done = True
        await observer
        assert sorted(e.sequence for e in events) == list(range(1, 61))
        assert store.snapshot() == {f"k{i:03}": value for i in range(60)}
        assert bound <= peak <= bound + record_size
        await log.aclose()

    asyncio.run(main())
    assert len(read_back(path)) == 60


def test_second_log_on_the_same_file_is_refused(path: Path) -> None:
    """While one log is running on a file, a second one on the same path fails with a 'locked' LogFailedError."""

    async def main() -> None:
        first, _ = await open_log(path)
        await first.write_put("a", b"1")
        with pytest.raises(LogFailedError, match="locked"):
            await open_log(path)
        assert await first.write_put("b", b"2") == put(2, "b", b"2")
        await first.aclose()
        second, store = await open_log(path)
        assert store.snapshot() == {"a": b"1", "b": b"2"}
        await second.aclose()

    asyncio.run(main())


def test_aclose_commits_queued_writes_then_refuses_more(path: Path) -> None:
    """Writes already submitted when aclose is called are committed; writes after it raise LogClosedError."""

    async def main() -> None:
        log, store = await open_log(path)
        tasks = [asyncio.ensure_future(log.write_put(f"k{i}", b"v")) for i in range(50)]
        # Let the tasks start: a task that has not run yet has not submitted its write.
        await asyncio.sleep(0)
        await log.aclose()
        assert all(task.done() for task in tasks)
        assert [task.result() for task in tasks] == [put(i + 1, f"k{i}", b"v") for i in range(50)]
        assert store.last_sequence == 50
        with pytest.raises(LogClosedError):
            await log.write_put("late", b"v")
        with pytest.raises(LogClosedError):
            await log.write_delete("k0")
        assert log.failure is None

    asyncio.run(main())
    assert [e.key for e in read_back(path)] == [f"k{i}" for i in range(50)]


@pytest.mark.parametrize("last_sequence", [4, 2, 1], ids=["gap", "duplicate", "backwards"])
def test_checksummed_record_out_of_sequence_at_the_end_is_corruption(path: Path, last_sequence: int) -> None:
    """A whole, checksummed last record with the wrong sequence is corruption, not a torn tail to cut silently."""
    good = encode_header() + encode_record(1, EventType.PUT, "a", b"1") + encode_record(2, EventType.PUT, "b", b"2")
    content = good + encode_record(last_sequence, EventType.PUT, "c", b"3")
    path.write_bytes(content)

    async def main() -> None:
        log = FileTransactionLog(path)
        with pytest.raises(
            LogCorruptError, match=f"sequence {last_sequence} where 3 was expected at offset {len(good)}"
        ):
            async for _ in log.read_events():
                pass
        await log.aclose()

    asyncio.run(main())
    assert path.read_bytes() == content


def test_second_log_does_not_cut_a_running_logs_file(path: Path) -> None:
    """A second log on a file in use is refused before it replays, so it cannot cut a write still in flight."""

    async def main() -> None:
        first, _ = await open_log(path)
        await first.write_put("a", b"1")
        # What the file looks like to another process in the middle of the next append.
        in_flight = encode_record(2, EventType.PUT, "b", b"2")[:10]
        append_bytes(path, in_flight)
        before = disk_bytes(path)
        with capture_logs() as logs, pytest.raises(LogFailedError, match="locked"):
            await open_log(path)
        assert logs == []
        assert disk_bytes(path) == before
        await first.aclose()

    asyncio.run(main())


def test_repair_refuses_a_log_in_use(path: Path) -> None:
    """repair_log on a file a running log holds raises a 'locked' LogFailedError and changes nothing."""

    async def main() -> None:
        log, _ = await open_log(path)
        await log.write_put("a", b"1")
        append_bytes(path, b"junk")
        before = disk_bytes(path)
        with pytest.raises(LogFailedError, match="locked"):
            repair_log(path)
        assert disk_bytes(path) == before
        await log.aclose()

    asyncio.run(main())
    report = repair_log(path)
    assert (report.events, report.dropped_bytes, report.corrupt) == (1, 4, False)
    assert read_back(path) == [put(1, "a", b"1")]


def test_a_crash_while_creating_the_log_leaves_nothing_that_blocks_a_start(tmp_path: Path) -> None:
    """A half-written temporary file from a crash during creation is ignored: the log is created whole."""
    path = tmp_path / "data" / "tuco.log"
    path.parent.mkdir()
    (tmp_path / "data" / "tuco.log.new").write_bytes(b"TUC")  # the header was never finished

    async def main() -> None:
        log, _ = await open_log(path)
        await log.write_put("k", b"v")
        await log.aclose()

    asyncio.run(main())
    assert path.read_bytes()[:HEADER_SIZE] == encode_header()
    assert read_back(path) == [put(1, "k", b"v")]
    assert sorted(p.name for p in path.parent.iterdir()) == ["tuco.log"]


def test_writev_writes_more_buffers_than_one_call_takes_in_order(tmp_path: Path) -> None:
    """OsLogFile.writev appends every buffer in order, past the kernel's limit of buffers per call."""
    path = tmp_path / "plain"
    path.write_bytes(b"")
    file = OsLogFile(path)
    parts = [b"%d," % i for i in range(3000)]
    try:
        file.writev(parts)
    finally:
        file.close()
    assert path.read_bytes() == b"".join(parts)
