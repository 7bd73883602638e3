"""The append-only file transaction log: the embedded default.

Durability rule: a write is acknowledged only after its record is on stable
storage. In ``always`` mode each group-committed batch is written and
``fdatasync``-ed (in a worker thread, so the event loop keeps gathering the
next batch) before anyone is acknowledged. In ``everysec`` mode a batch is
acknowledged once written to the kernel, and a timer syncs at least once a
second: a power loss (not a process crash) can take the last second of writes.
A failed ``fsync`` is never retried: after it the kernel may have dropped the
pages, so the log stops taking writes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import structlog

from tuco.core.codec import HEADER_SIZE, RecordDecoder, decode_header, encode_header, encode_record, find_valid_record
from tuco.core.events import Event, EventType
from tuco.errors import LogClosedError, LogCorruptError, LogError, LogFailedError
from tuco.log.batching import GroupCommit, Mutation
from tuco.ports import ApplyEvent

__all__ = ["FileTransactionLog", "LogFile", "LogReader", "OsLogFile", "ScanReport", "SyncMode", "repair_log"]

_logger = structlog.get_logger("tuco.log")
_READ_CHUNK = 4 << 20
_SCAN_WINDOW = 16 << 20


class SyncMode(enum.StrEnum):
    """When a write is acknowledged relative to ``fsync``."""

    ALWAYS = "always"
    EVERYSEC = "everysec"


class LogFile(Protocol):
    """The two operations the log needs from an open file; swapped in tests to inject failures."""

    def write(self, data: bytes) -> None:
        """Append all of ``data``."""
        ...

    def sync(self) -> None:
        """Make everything written so far durable."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class OsLogFile:
    """A log file opened for appending, exclusively locked against a second writer."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise LogFailedError(f"{path} is locked by another tuco process") from None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What reading a log found."""

    events: int
    last_sequence: int
    valid_bytes: int
    file_bytes: int
    problem: str | None = None
    corrupt: bool = False

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
            decode_header(file.read(HEADER_SIZE))
            decoder = RecordDecoder(max_record_bytes=self.max_record_bytes)
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
            self.report = ScanReport(count, decoder.next_sequence - 1, valid, file_bytes, problem, corrupt)


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


def create_log(path: Path) -> None:
    """Create an empty log durably: header written and synced, directory entry synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, encode_header())
        os.fsync(fd)
    finally:
        os.close(fd)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_log(path: Path, *, max_record_bytes: int = 1 << 31) -> ScanReport:
    """Cut the log after its last good record, whatever follows; return what was found.

    Raises :class:`LogFailedError` if a running tuco holds the log: its tail may be a write in flight.
    """
    with open(path, "r+b") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LogFailedError(f"{path} is locked by another tuco process") from None
        reader = LogReader(path, max_record_bytes=max_record_bytes)
        for _ in reader:
            pass
        report = reader.report
        if report is None:  # pragma: no cover - set by iteration
            raise RuntimeError("scan did not finish")
        if report.dropped_bytes:
            _truncate(file, report.valid_bytes)
    return report


def _cut(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        _truncate(file, size)


def _truncate(file: BinaryIO, size: int) -> None:
    file.truncate(size)
    file.flush()
    os.fsync(file.fileno())


class FileTransactionLog:
    """The :class:`~tuco.ports.TransactionLog` kept in one append-only file."""

    def __init__(
        self,
        path: Path,
        *,
        sync: SyncMode = SyncMode.ALWAYS,
        max_pending_bytes: int = 64 << 20,
        max_record_bytes: int = 1 << 31,
        sync_interval: float = 1.0,
        open_file: Callable[[Path], LogFile] | None = None,
    ) -> None:
        self.path = path
        self.sync_mode = sync
        self._max_record_bytes = max_record_bytes
        self._sync_interval = sync_interval
        self._open_file = open_file
        self._file: LogFile | None = None
        self._next_sequence = 1
        self._unsynced = False
        self._sync_task: asyncio.Task[None] | None = None
        self._commits = GroupCommit(self._commit, max_pending_bytes=max_pending_bytes)
        self.replay_report: ScanReport | None = None

    @property
    def failure(self) -> LogError | None:
        return self._commits.failure

    async def read_events(self) -> AsyncIterator[Sequence[Event]]:
        """Replay the file, creating it if missing and cutting a torn tail with a warning.

        The file is opened for writing, and so locked, before it is read: a
        second process must not replay (or cut the tail of) a log still in use.
        """
        if not self.path.exists():
            try:
                create_log(self.path)
            except OSError as exc:
                raise LogFailedError(f"cannot create {self.path}: {exc.strerror or exc}") from exc
        if self._file is None:
            self._open_for_writing()
        try:
            async for batch in self._replay():
                yield batch
        except BaseException:
            self._close_file()
            raise

    async def _replay(self) -> AsyncIterator[Sequence[Event]]:
        reader = LogReader(self.path, max_record_bytes=self._max_record_bytes)
        try:
            for batch in reader:
                yield batch
        except OSError as exc:
            raise LogFailedError(f"cannot read {self.path}: {exc.strerror}") from exc
        report = reader.report
        if report is None:  # pragma: no cover - set by iteration
            raise RuntimeError("replay did not finish")
        if report.corrupt:
            raise LogCorruptError(
                f"{self.path}: {report.problem}; refusing to start. "
                f"Inspect with 'tuco log verify {self.path}', cut with 'tuco log repair {self.path}'"
            )
        if report.dropped_bytes:
            _logger.warning(
                "log_tail_truncated",
                path=str(self.path),
                dropped_bytes=report.dropped_bytes,
                offset=report.valid_bytes,
                reason=report.problem,
            )
            try:
                _cut(self.path, report.valid_bytes)
            except OSError as exc:
                raise LogFailedError(f"cannot cut the torn tail of {self.path}: {exc.strerror}") from exc
        self._next_sequence = report.last_sequence + 1
        self.replay_report = report

    async def run(self, apply: ApplyEvent) -> None:
        if self.replay_report is None:
            async for _ in self.read_events():
                pass
        if self._file is None:
            self._open_for_writing()
        self._commits.start(apply)
        if self.sync_mode is SyncMode.EVERYSEC:
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_every_interval(), name="tuco-log-sync")

    def _open_for_writing(self) -> None:
        opener = self._open_file or OsLogFile
        try:
            self._file = opener(self.path)
        except OSError as exc:
            raise LogFailedError(f"cannot open {self.path} for writing: {exc.strerror}") from exc

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write_put(self, key: str, value: bytes) -> Awaitable[Event]:
        return self._commits.submit(EventType.PUT, key, value)

    def write_delete(self, key: str) -> Awaitable[Event]:
        return self._commits.submit(EventType.DELETE, key)

    async def catch_up(self) -> None:
        """Nothing to do: this process is the only writer, and its reads see every commit."""

    def describe(self) -> Mapping[str, object]:
        return {"backend": "file", "last_sequence": self._next_sequence - 1, "sync": self.sync_mode.value}

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Event]:
        file = self._file
        if file is None:
            raise LogClosedError("the log is not open")
        sequence = self._next_sequence
        events = [Event(sequence + i, m.type, m.key, m.value) for i, m in enumerate(batch)]
        data = b"".join([encode_record(e.sequence, e.type, e.key, e.value) for e in events])
        try:
            if self.sync_mode is SyncMode.ALWAYS:
                await asyncio.to_thread(_write_and_sync, file, data)
            else:
                file.write(data)
                self._unsynced = True
        except OSError as exc:
            raise LogFailedError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._next_sequence = sequence + len(events)
        return events

    async def _sync_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._sync_interval)
            await self._sync_now()

    async def _sync_now(self) -> None:
        file = self._file
        if file is None or not self._unsynced or self.failure is not None:
            return
        self._unsynced = False
        try:
            await asyncio.to_thread(file.sync)
        except OSError as exc:
            error = LogFailedError(f"cannot sync {self.path}: {exc.strerror or exc}")
            error.__cause__ = exc
            self._commits.fail(error)

    async def aclose(self) -> None:
        """Commit what is queued, sync, stop the timer and close the file."""
        await self._commits.aclose()
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        if self._file is not None:
            self._unsynced = True  # a sync cancelled above may not have finished: always sync once more
            await self._sync_now()
            self._close_file()


def _write_and_sync(file: LogFile, data: bytes) -> None:
    file.write(data)
    file.sync()
