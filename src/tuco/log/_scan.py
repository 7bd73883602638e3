"""Reading a log file whole: streaming replay, the torn-tail versus corruption verdict, and repair."""

from __future__ import annotations

import os
import zlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tuco.core.codec import HEADER_SIZE, PLAIN_VERSION, RECORD_OVERHEAD, RecordDecoder, decode_header, record_heads
from tuco.core.events import Event
from tuco.log._disk import (
    clear_refused,
    hold_directory,
    lock_exclusively,
    open_regular_file,
    read_refused,
    truncate_file,
)

__all__ = ["LogReader", "ScanReport", "repair_log"]

_READ_CHUNK = 4 << 20
_SCAN_WINDOW = 16 << 20
_HEAD_BYTES = 21  # frame and payload head: what record_heads needs at each position


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
    entries: int = 0
    """How many of ``events`` are compacted entries (version 2): the rest are ordinary records."""

    @property
    def dropped_bytes(self) -> int:
        """Bytes after the last good record."""
        return self.file_bytes - self.valid_bytes


class LogReader:
    """Streams a log file's events in batches; memory is bounded by the chunk size (or the largest record).

    After iteration, ``report`` says whether the file ended cleanly, with a
    torn tail or with corruption. A record whose declared length runs past the
    end of the file is a torn tail (a write cut short), whatever its bytes hold:
    a value may contain well-formed records, planted by any client, so the span
    a record declares is never searched for others. A bad record is corruption
    if it is whole and checksummed (a torn write never is), or if a valid
    record of this log follows its declared span.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.report: ScanReport | None = None

    def __iter__(self) -> Generator[Sequence[Event], None, None]:
        with open_regular_file(self.path) as file:
            file_bytes = os.fstat(file.fileno()).st_size
            header = decode_header(file.read(HEADER_SIZE))
            compacted = header.version > PLAIN_VERSION
            decoder = RecordDecoder(first_sequence=header.first_sequence, compacted=compacted)
            count = 0
            while chunk := file.read(max(_READ_CHUNK, decoder.wanted_bytes)):
                for batch in decoder.feed_batches(chunk):
                    count += len(batch)
                    yield batch
                if decoder.failure is not None:
                    break
            valid = decoder.offset
            problem = None
            corrupt = False
            failure = decoder.failure
            if valid < file_bytes:
                problem = failure.reason if failure else "incomplete record"
                if failure is not None and failure.search_from is None:
                    corrupt = True
                    problem = f"{problem} at offset {valid} (a whole, checksummed record: not a torn write)"
                elif failure is not None and failure.search_from is not None:
                    # Records after a damaged one carry its sequence or later ones, one per 21 bytes at most;
                    # in a compacted log, entries below the first sequence too.
                    sequences = range(
                        1 if compacted else header.first_sequence,
                        decoder.next_sequence + (file_bytes - valid) // RECORD_OVERHEAD + 2,
                    )
                    after = _find_record_after(file.fileno(), failure.search_from, file_bytes, sequences, compacted)
                    if after is not None:
                        corrupt = True
                        problem = f"{problem} at offset {valid}, followed by a valid record at offset {after}"
            self.report = ScanReport(
                count,
                decoder.next_sequence - 1,
                valid,
                file_bytes,
                problem,
                corrupt,
                header.first_sequence,
                decoder.entries,
            )


def _find_record_after(fd: int, start: int, end: int, sequences: range, compacted: bool) -> int | None:
    """Return the first offset in ``[start, end)`` of the file where a whole record of this log starts.

    The file is scanned in windows; a candidate's checksum is computed from the
    file, so records larger than a window are found too.
    """
    pos = start
    while pos < end:
        window = os.pread(fd, _SCAN_WINDOW + _HEAD_BYTES, pos)
        for head in record_heads(window, sequences, stop=_SCAN_WINDOW, compacted=compacted):
            found = pos + head.position
            span_end = found + 8 + head.length
            if span_end <= end and _checksum(fd, window, pos, found + 8, span_end) == head.checksum:
                return found
        pos += _SCAN_WINDOW
    return None


def _checksum(fd: int, window: bytes, window_start: int, start: int, end: int) -> int:
    """CRC-32 of bytes ``[start, end)`` of the file, from ``window`` as far as it reaches."""
    in_window = window[start - window_start : end - window_start]
    crc = zlib.crc32(in_window)
    pos = start + len(in_window)
    while pos < end:
        data = os.pread(fd, min(_READ_CHUNK, end - pos), pos)
        if not data:
            break
        crc = zlib.crc32(data, crc)
        pos += len(data)
    return crc


def repair_log(path: Path) -> ScanReport:
    """Cut the log after its last good record, whatever follows; return what was found.

    A batch the server refused but could not cut off (recorded beside the log)
    is cut too, and the record of it removed. Raises :class:`LogFailedError`
    if a running tuco holds the log: its tail may be a write in flight.
    """
    with hold_directory(path), open_regular_file(path, writable=True) as file:
        lock_exclusively(file.fileno(), path)
        refused = read_refused(path)
        reader = LogReader(path)
        for _ in reader:
            pass
        report = reader.report
        if report is None:  # pragma: no cover - set by iteration
            raise RuntimeError("scan did not finish")
        if refused is not None and refused.offset <= report.valid_bytes:
            report = ScanReport(
                events=report.entries + refused.first_sequence - report.first_sequence,
                last_sequence=refused.first_sequence - 1,
                valid_bytes=refused.offset,
                file_bytes=report.file_bytes,
                problem=f"{refused.describe()} never acknowledged",
                first_sequence=report.first_sequence,
                entries=report.entries,
            )
        if report.dropped_bytes:
            truncate_file(file, report.valid_bytes)
        if refused is not None:
            clear_refused(path)
    return report
