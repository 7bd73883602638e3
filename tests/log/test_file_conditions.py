"""Conditional writes on the one-writer logs (file and memory): decided in log order by sequence_batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from tests.log.helpers import disk_bytes, open_log
from tuco.core.codec import encode_header, encode_record
from tuco.core.events import ABSENT, EXISTS, Event, EventType, Precondition
from tuco.core.store import Store
from tuco.errors import PreconditionFailedError
from tuco.log.file import FileTransactionLog, LogReader
from tuco.ports import TransactionLog
from tuco.testing import LogFileCall, MemoryLog, RecordingLogFile, RecordingSink

Opened = tuple[TransactionLog, Store]


@asynccontextmanager
async def memory_log(_: Path, **options: Any) -> AsyncIterator[Opened]:
    log = MemoryLog()
    sink = RecordingSink()
    await log.run(sink)
    try:
        yield log, sink.store
    finally:
        await log.aclose()


@asynccontextmanager
async def file_log(path: Path, **options: Any) -> AsyncIterator[Opened]:
    log, store = await open_log(path, compact_min_bytes=0, **options)
    try:
        yield log, store
    finally:
        await log.aclose()


LOGS = pytest.mark.parametrize("opened", [memory_log, file_log], ids=["memory", "file"])
OpenLog = Callable[..., Any]


def committed_batches(log: object) -> int:
    """How many batches the log's group commit has committed (both one-writer logs have one)."""
    return cast(MemoryLog | FileTransactionLog, log)._commits.batches


def put(sequence: int, key: str, value: bytes) -> Event:
    return Event(sequence, EventType.PUT, key, value)


def delete(sequence: int, key: str) -> Event:
    return Event(sequence, EventType.DELETE, key)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tuco.log"


@LOGS
@pytest.mark.parametrize(
    ("state", "precondition", "refused_at"),
    [
        ("at 2", Precondition(2), None),
        ("at 2", Precondition(1), 2),
        ("absent", Precondition(2), 0),
        ("at 2", EXISTS, None),
        ("absent", EXISTS, 0),
        ("absent", ABSENT, None),
        ("at 2", ABSENT, 2),
    ],
    ids=[
        "if-match-holds",
        "if-match-stale",
        "if-match-absent",
        "exists-holds",
        "exists-absent",
        "absent-holds",
        "absent-exists",
    ],
)
@pytest.mark.parametrize("kind", ["put", "delete"])
def test_each_kind_of_condition_writes_when_it_holds_and_refuses_when_not(
    path: Path, opened: OpenLog, state: str, precondition: Precondition, refused_at: int | None, kind: str
) -> None:
    """If-Match "n", If-Match * and If-None-Match * write when they hold, else refuse naming the revision found."""

    async def main() -> None:
        async with opened(path) as (log, store):
            await log.write_put("other", b"0")
            await log.write_put("k", b"1")  # k is at 2
            if state == "absent":
                await log.write_delete("k")
            before = (store.entries(), store.last_sequence)
            last = before[1]
            write = log.write_put("k", b"new", precondition) if kind == "put" else log.write_delete("k", precondition)
            if refused_at is None:
                expected = put(last + 1, "k", b"new") if kind == "put" else delete(last + 1, "k")
                assert await write == expected
                assert store.last_sequence == last + 1
                return
            with pytest.raises(PreconditionFailedError) as caught:
                await write
            assert (caught.value.key, caught.value.current) == ("k", refused_at)
            assert (caught.value.code, caught.value.status) == ("precondition_failed", 412)
            assert (store.entries(), store.last_sequence) == before
            assert await log.write_put("next", b"1") == put(last + 1, "next", b"1")

    asyncio.run(main())


@LOGS
def test_conditions_within_one_batch_are_judged_against_its_earlier_writes(path: Path, opened: OpenLog) -> None:
    """Writes submitted together form one batch, and each condition sees the writes before it in that batch."""

    async def main() -> None:
        async with opened(path) as (log, store):
            batches = committed_batches(log)
            outcomes = await asyncio.gather(
                log.write_put("k", b"1", ABSENT),
                log.write_put("k", b"2", ABSENT),
                log.write_put("k", b"3", Precondition(1)),
                log.write_delete("k", Precondition(1)),
                log.write_delete("k", EXISTS),
                log.write_put("k", b"4", EXISTS),
                log.write_put("k", b"5", ABSENT),
                return_exceptions=True,
            )
            assert committed_batches(log) == batches + 1
            refused = [(o.key, o.current) if isinstance(o, PreconditionFailedError) else o for o in outcomes]
            assert refused == [
                put(1, "k", b"1"),
                ("k", 1),
                put(2, "k", b"3"),
                ("k", 2),
                delete(3, "k"),
                ("k", 0),
                put(4, "k", b"5"),
            ]
            assert store.entries() == {"k": (b"5", 4, 4, 1)}

    asyncio.run(main())


def test_a_refused_write_takes_no_sequence_is_not_in_the_file_and_is_not_replayed(path: Path) -> None:
    """The file holds exactly the writes whose conditions held, numbered without gaps, and a restart replays them."""

    async def main() -> None:
        log, _ = await open_log(path)
        await asyncio.gather(
            log.write_put("a", b"1"),
            log.write_put("a", b"refused", ABSENT),
            log.write_put("b", b"2", ABSENT),
            log.write_delete("a", Precondition(2)),
            log.write_delete("a", Precondition(1)),
            return_exceptions=True,
        )
        with pytest.raises(PreconditionFailedError):
            await log.write_put("b", b"refused", Precondition(1))
        assert await log.write_put("c", b"3") == put(4, "c", b"3")
        await log.aclose()

    asyncio.run(main())
    records = [put(1, "a", b"1"), put(2, "b", b"2"), delete(3, "a"), put(4, "c", b"3")]
    assert path.read_bytes() == encode_header() + b"".join(
        encode_record(e.sequence, e.type, e.key, e.value) for e in records
    )
    assert [event for batch in LogReader(path) for event in batch] == records


def test_a_batch_whose_writes_are_all_refused_writes_and_syncs_nothing(path: Path) -> None:
    """When every condition of a batch fails, the file is neither written nor synced, and the next write follows."""
    journal: list[LogFileCall] = []

    async def main() -> None:
        log, _ = await open_log(path, open_file=lambda p: RecordingLogFile(p, journal))
        await log.write_put("a", b"1")
        before, calls = disk_bytes(path), len(journal)
        outcomes = await asyncio.gather(
            log.write_put("a", b"x", ABSENT),
            log.write_delete("missing", EXISTS),
            log.write_put("a", b"y", Precondition(7)),
            return_exceptions=True,
        )
        assert [(o.key, o.current) for o in outcomes if isinstance(o, PreconditionFailedError)] == [
            ("a", 1),
            ("missing", 0),
            ("a", 1),
        ]
        assert (disk_bytes(path), journal[calls:]) == (before, [])
        assert await log.write_put("b", b"2") == put(2, "b", b"2")
        await log.aclose()

    asyncio.run(main())


@LOGS
def test_concurrent_compare_and_swaps_from_one_revision_have_exactly_one_winner(path: Path, opened: OpenLog) -> None:
    """Fifty writers doing If-Match on one key from the same revision: one wins, the rest see the winner's revision."""

    async def main() -> None:
        async with opened(path) as (log, store):
            start = (await log.write_put("counter", b"0")).sequence

            async def increment(writer: int) -> Event | PreconditionFailedError:
                await asyncio.sleep(0)  # let the writers interleave with commits
                try:
                    event: Event = await log.write_put("counter", b"%d" % writer, Precondition(start))
                    return event
                except PreconditionFailedError as exc:
                    return exc

            outcomes = await asyncio.gather(*(increment(n) for n in range(50)))
            winners = [o for o in outcomes if isinstance(o, Event)]
            assert len(winners) == 1
            assert winners[0].sequence == start + 1
            assert {(o.key, o.current) for o in outcomes if isinstance(o, PreconditionFailedError)} == {
                ("counter", start + 1)
            }
            assert store.entry("counter") == (winners[0].value, start, start + 1, 2)
            assert store.last_sequence == start + 1
            if isinstance(log, FileTransactionLog):
                await log.aclose()
                assert [e for batch in LogReader(path) for e in batch] == [put(1, "counter", b"0"), winners[0]]

    asyncio.run(main())
