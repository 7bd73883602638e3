"""What makes a stored record valid: its framing and checksum, never today's request limits or a client's value."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Le
from structlog.testing import capture_logs

from tests.log.helpers import disk_bytes
from tuco.assembly import build_log
from tuco.config import Settings, load_settings
from tuco.core.codec import (
    HEADER_SIZE,
    MAX_KEY_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_VALUE_BYTES,
    encode_entry,
    encode_header,
    encode_record,
)
from tuco.core.events import Event, EventType
from tuco.core.store import Store
from tuco.errors import LogCorruptError
from tuco.log.file import FileTransactionLog, LogReader, repair_log


def put(sequence: int, key: str, value: bytes) -> Event:
    return Event(sequence, EventType.PUT, key, value)


async def replay_with(settings: Settings) -> tuple[dict[str, bytes], list[MutableMapping[str, Any]]]:
    """Start the log the server would build from ``settings``; return the state and what was logged."""
    log = build_log(settings)
    assert isinstance(log, FileTransactionLog)
    store = Store()
    with capture_logs() as logs:
        try:
            async for batch in log.read_events():
                store.apply_batch(batch)
        finally:
            await log.aclose()
    return store.snapshot(), logs


def upper_bound(field: str) -> int:
    (bound,) = [item.le for item in Settings.model_fields[field].metadata if isinstance(item, Le)]
    assert isinstance(bound, int)
    return bound


def test_the_format_maximum_covers_every_record_any_setting_allows() -> None:
    """The largest legal record is fixed by the format: the largest key and value any allowed setting accepts."""
    assert upper_bound("max_key_bytes") == MAX_KEY_BYTES == 65536
    assert upper_bound("max_value_bytes") == MAX_VALUE_BYTES == 1 << 30
    # 16: the deadline and lease an expiring PUT carries beyond a PUT's head.
    assert MAX_PAYLOAD_BYTES == 8 + 1 + 4 + 16 + MAX_KEY_BYTES + MAX_VALUE_BYTES


@pytest.mark.parametrize("where", ["middle", "tail"])
def test_records_over_todays_limits_replay_after_the_limits_were_lowered(tmp_path: Path, where: str) -> None:
    """A record written under larger limits replays whole after the limits are lowered, in the middle or at the end."""
    data = tmp_path / "data"
    big_key, big_value = "k" * 2000, bytes(range(256)) * 200
    events = [put(1, "small", b"1"), put(2, big_key, big_value)]
    if where == "middle":
        events.append(put(3, "after", b"3"))
    data.mkdir()
    content = encode_header() + b"".join(encode_record(e.sequence, e.type, e.key, e.value) for e in events)
    (data / "tuco.log").write_bytes(content)
    expected = {e.key: e.value for e in events}

    for max_key, max_value in [(10, 100), (65536, 1 << 30), (1, 0)]:
        settings = load_settings(data_dir=data, max_key_bytes=max_key, max_value_bytes=max_value)
        state, logs = asyncio.run(replay_with(settings))
        assert (state, logs) == (expected, []), (max_key, max_value)
        assert disk_bytes(data / "tuco.log") == content


def test_a_torn_record_whose_value_holds_a_whole_record_is_a_torn_tail(path: Path, tmp_path: Path) -> None:
    """A record cut short is a torn tail even when its value holds a well-formed record: its span is never searched."""
    good = encode_header() + encode_record(1, EventType.PUT, "a", b"1") + encode_record(2, EventType.PUT, "b", b"2")
    planted = encode_record(3, EventType.PUT, "planted", b"x") + encode_record(4, EventType.PUT, "more", b"y")
    hostile = encode_record(3, EventType.PUT, "victim", b"pad" + planted + b"pad")
    inside = hostile.index(planted)
    for cut in range(inside + len(planted), len(hostile)):
        path.write_bytes(good + hostile[:cut])
        reader = LogReader(path)
        assert [event for batch in reader for event in batch] == [put(1, "a", b"1"), put(2, "b", b"2")]
        assert reader.report is not None
        assert (reader.report.corrupt, reader.report.problem, reader.report.valid_bytes) == (
            False,
            "incomplete record",
            len(good),
        ), cut

        async def start(cut: int = cut) -> None:
            log = FileTransactionLog(path)
            with capture_logs() as logs:
                replayed = [event async for batch in log.read_events() for event in batch]
            await log.aclose()
            assert replayed == [put(1, "a", b"1"), put(2, "b", b"2")]
            assert [(entry["event"], entry["dropped_bytes"]) for entry in logs] == [("log_tail_truncated", cut)]

        asyncio.run(start())
        assert path.read_bytes() == good


def test_a_valid_record_larger_than_the_search_window_after_a_damaged_one_is_corruption(path: Path) -> None:
    """A damaged record followed by a whole 33 MiB record is corruption, whatever the record's size."""
    huge = b"h" * (33 << 20)
    first = encode_record(1, EventType.PUT, "a", b"1")
    damaged = bytearray(first)
    damaged[-1] ^= 0xFF
    path.write_bytes(encode_header() + bytes(damaged) + encode_record(2, EventType.PUT, "huge", huge))
    reader = LogReader(path)
    assert [event for batch in reader for event in batch] == []
    assert reader.report is not None
    assert reader.report.corrupt is True
    assert reader.report.problem == (
        f"checksum mismatch at offset {HEADER_SIZE}, followed by a valid record at offset {HEADER_SIZE + len(first)}"
    )

    async def start() -> None:
        log = FileTransactionLog(path)
        with pytest.raises(LogCorruptError, match=f"followed by a valid record at offset {HEADER_SIZE + len(first)}"):
            async for _ in log.read_events():
                pass
        await log.aclose()

    asyncio.run(start())


def test_repair_and_replay_agree_on_a_torn_hostile_tail(path: Path) -> None:
    """repair_log cuts exactly what start-up would: the torn record with the planted one inside it."""
    good = encode_header() + encode_record(1, EventType.PUT, "a", b"1")
    hostile = encode_record(2, EventType.PUT, "victim", encode_record(2, EventType.PUT, "planted", b"x") * 3)
    path.write_bytes(good + hostile[:-5])
    report = repair_log(path)
    assert (report.corrupt, report.events, report.valid_bytes, report.dropped_bytes) == (
        False,
        1,
        len(good),
        len(hostile) - 5,
    )
    assert path.read_bytes() == good


@pytest.mark.parametrize(
    ("after", "corrupt"),
    [
        (encode_record(3, EventType.PUT, "", b""), True),  # the smallest record, as the file's last 21 bytes
        (encode_record(2, EventType.PUT, "next", b"n"), True),  # the damaged record's own sequence (junk inserted)
        (encode_record(9, EventType.PUT, "late", b"n"), False),  # a sequence the bytes after the damage cannot reach
        (encode_record(1, EventType.PUT, "old", b"o"), True),  # an earlier sequence of this log: still a record of it
        (encode_record(0, EventType.PUT, "nil", b"o"), False),  # below the header's first sequence: not of this log
        (encode_record(3, EventType.PUT, "torn", b"t")[:-1], False),  # no whole record at all
    ],
    ids=["minimal", "same-sequence", "sequence-too-far", "earlier-sequence", "sequence-zero", "torn"],
)
def test_after_a_damaged_record_only_a_whole_record_that_can_follow_it_means_corruption(
    path: Path, after: bytes, corrupt: bool
) -> None:
    """After a checksum mismatch, only a whole record with a sequence this log can hold there means corruption."""
    good = encode_header() + encode_record(1, EventType.PUT, "a", b"1")
    damaged = bytearray(encode_record(2, EventType.PUT, "b", b"2"))
    damaged[-1] ^= 0xFF
    path.write_bytes(good + bytes(damaged) + after)
    reader = LogReader(path)
    assert [event for batch in reader for event in batch] == [put(1, "a", b"1")]
    assert reader.report is not None
    if not corrupt:
        assert (reader.report.corrupt, reader.report.problem) == (False, "checksum mismatch")
    else:
        assert (reader.report.corrupt, reader.report.problem) == (
            True,
            f"checksum mismatch at offset {len(good)}, followed by a valid record at offset {len(good) + 23}",
        )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "tuco.log"


def compacted_log() -> tuple[bytes, list[Event]]:
    """A version 2 log: two entries, then ordinary records 5 and 6; and the events it replays to."""
    data = (
        encode_header(first_sequence=5, version=2)
        + encode_entry("b", b"2", create_revision=2, mod_revision=2, version=1)
        + encode_entry("a", b"1", create_revision=1, mod_revision=4, version=3)
        + encode_record(5, EventType.PUT, "c", b"3")
        + encode_record(6, EventType.DELETE, "b")
    )
    events = [
        Event(2, EventType.PUT, "b", b"2", 2, 1),
        Event(4, EventType.PUT, "a", b"1", 1, 3),
        put(5, "c", b"3"),
        Event(6, EventType.DELETE, "b"),
    ]
    return data, events


def test_a_compacted_log_cut_at_every_byte_is_a_torn_tail_ending_at_the_last_whole_record(path: Path) -> None:
    """Cut anywhere, entries included, a version 2 log replays its whole records and reports the rest as torn."""
    data, events = compacted_log()
    ends = [HEADER_SIZE, HEADER_SIZE + 39, HEADER_SIZE + 78, HEADER_SIZE + 78 + 23, len(data)]
    for cut in range(HEADER_SIZE, len(data) + 1):
        path.write_bytes(data[:cut])
        reader = LogReader(path)
        replayed = [event for batch in reader for event in batch]
        whole = max(i for i, end in enumerate(ends) if end <= cut)
        assert replayed == events[:whole], cut
        assert reader.report is not None
        assert (reader.report.valid_bytes, reader.report.corrupt, reader.report.entries) == (
            ends[whole],
            False,
            min(whole, 2),
        )
        # The header's first sequence holds the revision: never handed out again after a cut.
        assert reader.report.last_sequence == (4 if whole < 3 else 4 + whole - 2)


@pytest.mark.parametrize("damaged", [0, 1], ids=["first-entry", "second-entry"])
def test_a_damaged_entry_followed_by_a_valid_record_is_corruption(path: Path, damaged: int) -> None:
    """A checksum mismatch in the compacted section with a valid entry or record after it refuses to start."""
    data, _ = compacted_log()
    broken = bytearray(data)
    offset = HEADER_SIZE + 39 * damaged
    broken[offset + 38] ^= 0xFF  # the entry's value byte
    path.write_bytes(bytes(broken))
    reader = LogReader(path)
    assert len([event for batch in reader for event in batch]) == damaged
    assert reader.report is not None
    assert (reader.report.corrupt, reader.report.problem) == (
        True,
        f"checksum mismatch at offset {offset}, followed by a valid record at offset {offset + 39}",
    )


def test_a_torn_entry_whose_value_holds_whole_records_is_a_torn_tail(path: Path) -> None:
    """An entry cut short is a torn tail even when its value holds well-formed entries: its span is never searched."""
    planted = encode_entry("planted", b"x", 2, 2, 1) + encode_record(3, EventType.PUT, "more", b"y")
    good = encode_header(first_sequence=3, version=2) + encode_entry("a", b"1", 1, 1, 1)
    hostile = encode_entry("victim", b"pad" + planted + b"pad", 2, 2, 1)
    path.write_bytes(good + hostile[:-1])
    reader = LogReader(path)
    assert [event for batch in reader for event in batch] == [Event(1, EventType.PUT, "a", b"1", 1, 1)]
    assert reader.report is not None
    assert (reader.report.corrupt, reader.report.problem, reader.report.valid_bytes) == (
        False,
        "incomplete record",
        len(good),
    )
