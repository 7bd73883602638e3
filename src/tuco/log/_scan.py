"""Reading a log file whole: streaming replay, the torn-tail versus corruption verdict, and repair."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tuco.core.codec import HEADER_SIZE, RecordDecoder, decode_header, find_valid_record
from tuco.core.events import Event
from tuco.log._disk import lock_exclusively, truncate_file

__all__ = ["LogReader", "ScanReport", "repair_log"]

_READ_CHUNK = 4 << 20
_SCAN_WINDOW = 16 << 20


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What reading a log found."""

    events: int
    last_sequence: int
    valid_bytes: int
    file_bytes: int
    problem: str | None = None
    corrupt: bool = False
    first_sequence: int = 1

    @property
    def dropped_bytes(self) -> int:
        """Bytes after the last good record."""
        return self.file_bytes - self.valid_bytes


class LogReader:
    """Streams a log file's events in batches; memory is bounded by the chunk size.

    After iteration, ``report`` says whether the file ended cleanly, with a
    torn tail (bad bytes after the last good record, and no good record after
    them) or with corruption (a bad record followed by good ones).
    """

    def __init__(self, path: Path, *, max_record_bytes: int = 1 << 31) -> None:
        self.path = path
        self.max_record_bytes = max_record_bytes
        self.report: ScanReport | None = None

    def __iter__(self) -> Iterator[list[Event]]:
        with open(self.path, "rb") as file:
            file_bytes = os.fstat(file.fileno()).st_size
            header = decode_header(file.read(HEADER_SIZE))
            decoder = RecordDecoder(first_sequence=header.first_sequence, max_record_bytes=self.max_record_bytes)
            count = 0
            while chunk := file.read(_READ_CHUNK):
                events = decoder.feed(chunk)
                if events:
                    count += len(events)
                    yield events
                if decoder.failure is not None:
                    break
            valid = decoder.offset
            problem = None
            corrupt = False
            if valid < file_bytes:
                problem = decoder.failure.reason if decoder.failure else "incomplete record"
                # Search from the bad record itself: a torn write never has a valid
                # checksum, so a whole record there (out of sequence) is corruption.
                after = _find_record_after(file, valid, file_bytes, self.max_record_bytes)
                if after is not None:
                    corrupt = True
                    problem = f"{problem} at offset {valid}, followed by a valid record at offset {after}"
            self.report = ScanReport(
                count, decoder.next_sequence - 1, valid, file_bytes, problem, corrupt, header.first_sequence
            )


def _find_record_after(file: BinaryIO, start: int, end: int, max_record_bytes: int) -> int | None:
    """Scan ``[start, end)`` of the file in overlapping windows for a valid record."""
    overlap = min(max_record_bytes + 8, _SCAN_WINDOW)
    pos = start
    while pos < end:
        file.seek(pos)
        window = file.read(_SCAN_WINDOW + overlap)
        found = find_valid_record(window, max_record_bytes=max_record_bytes)
        if found is not None and found < _SCAN_WINDOW:
            return pos + found
        pos += _SCAN_WINDOW
    return None


def repair_log(path: Path, *, max_record_bytes: int = 1 << 31) -> ScanReport:
    """Cut the log after its last good record, whatever follows; return what was found.

    Raises :class:`LogFailedError` if a running tuco holds the log: its tail may be a write in flight.
    """
    with open(path, "r+b") as file:
        lock_exclusively(file.fileno(), path)
        reader = LogReader(path, max_record_bytes=max_record_bytes)
        for _ in reader:
            pass
        report = reader.report
        if report is None:  # pragma: no cover - set by iteration
            raise RuntimeError("scan did not finish")
        if report.dropped_bytes:
            truncate_file(file, report.valid_bytes)
    return report
