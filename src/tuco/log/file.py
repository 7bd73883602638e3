"""The append-only file transaction log: the embedded default.

Durability rule: a write is acknowledged only after its record is on stable
storage. In ``always`` mode each group-committed batch is written and
``fdatasync``-ed (in a worker thread, so the event loop keeps gathering the
next batch) before anyone is acknowledged. In ``everysec`` mode a batch is
acknowledged once written to the kernel, and a timer syncs at least once a
second: a power loss (not a process crash) can take the last second of writes.
A failed ``fsync`` is never retried: after it the kernel may have dropped the
pages, so the log stops taking writes instead.

Compaction rewrites the log as one PUT per live key, the Redis AOF way: the
state is snapshotted between two batches at sequence S, written to a new file
in a worker thread while batches keep being appended to the old one, and then,
between two batches again, the old file's records after S are copied over and
the new file atomically replaces the old. Only that last copy holds writers up.
The new file is locked before it is renamed into place, so no second process
can open the log in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ParamSpec, Protocol, TypeVar

import structlog

from tuco.core.codec import (
    HEADER_SIZE,
    RECORD_OVERHEAD,
    RecordDecoder,
    decode_header,
    encode_header,
    encode_record,
    find_valid_record,
)
from tuco.core.events import Event, EventType
from tuco.errors import LogClosedError, LogCorruptError, LogError, LogFailedError
from tuco.log.batching import GroupCommit, Mutation
from tuco.ports import ApplyEvent

__all__ = [
    "CompactionReport",
    "FileTransactionLog",
    "LogFile",
    "LogReader",
    "OsLogFile",
    "ScanReport",
    "SyncMode",
    "compact_log",
    "repair_log",
]

_logger = structlog.get_logger("tuco.log")
_READ_CHUNK = 4 << 20
_SCAN_WINDOW = 16 << 20
_WRITE_CHUNK = 1 << 20
_COPY_CHUNK = 4 << 20
_T = TypeVar("_T")
_P = ParamSpec("_P")


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
            _lock(self.fd, path)
        except BaseException:
            os.close(self.fd)
            raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _lock(fd: int, path: Path) -> None:
    """Lock the file open as ``fd`` exclusively, or raise a 'locked' :class:`LogFailedError`.

    Also refuses if ``path`` no longer names that file: a compaction in another
    process may have replaced it between our open and our lock, and a lock on
    the replaced file would guard nothing.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LogFailedError(f"{path} is locked by another tuco process") from None
    opened = os.fstat(fd)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        named = None
    if named is None or (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
        raise LogFailedError(f"{path} was replaced while being opened (compacted by another tuco process); try again")


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
        _lock(file.fileno(), path)
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


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What compacting a log did."""

    events_before: int
    events_after: int
    bytes_before: int
    bytes_after: int
    last_sequence: int
    dropped_bytes: int = 0


class _CompactionStopped(Exception):
    """The log is closing: the compaction gives up and leaves the old file as it was."""


def compact_log(path: Path, *, max_record_bytes: int = 1 << 31) -> CompactionReport:
    """Rewrite the log as one PUT per live key, replacing it atomically; return what changed.

    Memory is bounded by the live state. Raises a 'locked' :class:`LogFailedError`
    if a running tuco holds the log, :class:`LogCorruptError` if it is corrupt
    (repair it first); a torn tail is left out, as the server would cut it.
    """
    tmp = _compaction_path(path)
    try:
        with open(path, "rb") as held:
            _lock(held.fileno(), path)
            reader = LogReader(path, max_record_bytes=max_record_bytes)
            state: dict[str, bytes] = {}
            put = EventType.PUT
            for batch in reader:
                for _, event_type, key, value in batch:
                    if event_type is put:
                        state[key] = value
                    else:
                        state.pop(key, None)
            report = reader.report
            if report is None:  # pragma: no cover - set by iteration
                raise RuntimeError("scan did not finish")
            if report.corrupt:
                raise LogCorruptError(f"{report.problem}; refusing to compact. Cut it with 'tuco log repair {path}'")
            new_file = _create_compaction_file(tmp, OsLogFile)
            try:
                written, first_sequence = _write_compacted(new_file, report.last_sequence, state, None)
                new_file.sync()
                os.replace(tmp, path)
                _sync_directory(path.parent)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            finally:
                new_file.close()
    except OSError as exc:
        raise LogFailedError(f"cannot compact {path}: {exc.strerror or exc}") from exc
    return CompactionReport(
        events_before=report.events,
        events_after=report.last_sequence - first_sequence + 1,
        bytes_before=report.file_bytes,
        bytes_after=written,
        last_sequence=report.last_sequence,
        dropped_bytes=report.dropped_bytes,
    )


def _compaction_path(path: Path) -> Path:
    return path.with_name(path.name + ".compact")


def _create_compaction_file(tmp: Path, opener: Callable[[Path], LogFile]) -> LogFile:
    """Create (or empty a stale) ``tmp`` and open it, locked, for appending."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.close(fd)
    return opener(tmp)


def _write_compacted(
    file: LogFile, last_sequence: int, state: Mapping[str, bytes], stop: threading.Event | None
) -> tuple[int, int]:
    """Write the header and one PUT per key, numbered up to ``last_sequence``; return (bytes, first sequence).

    With no key left, one DELETE (of the empty key, a no-op with nothing left)
    carries ``last_sequence``: replay then still ends at that sequence.
    """
    if not state and last_sequence > 0:
        records = encode_header(first_sequence=last_sequence) + encode_record(last_sequence, EventType.DELETE, "")
        file.write(records)
        return len(records), last_sequence
    first_sequence = last_sequence - len(state) + 1
    chunk = [encode_header(first_sequence=first_sequence)]
    pending = HEADER_SIZE
    written = 0
    sequence = first_sequence
    put = EventType.PUT
    for key, value in state.items():
        record = encode_record(sequence, put, key, value)
        chunk.append(record)
        pending += len(record)
        sequence += 1
        if pending >= _WRITE_CHUNK:
            if stop is not None and stop.is_set():
                raise _CompactionStopped
            file.write(b"".join(chunk))
            written += pending
            chunk.clear()
            pending = 0
    file.write(b"".join(chunk))
    return written + pending, first_sequence


def _copy_range(source: int, target: LogFile, start: int, end: int, stop: threading.Event | None) -> None:
    """Append bytes ``[start, end)`` of the file open as ``source`` to ``target``."""
    pos = start
    while pos < end:
        if stop is not None and stop.is_set():
            raise _CompactionStopped
        data = os.pread(source, min(_COPY_CHUNK, end - pos), pos)
        if not data:
            raise OSError(f"the log ended at offset {pos}, before {end}")
        target.write(data)
        pos += len(data)


@dataclass(slots=True)
class _Rewrite:
    """One online compaction in progress, shared with its worker threads."""

    tmp: Path
    stop: threading.Event = field(default_factory=threading.Event)
    source: int | None = None  # the old file, read-only: its tail is copied over
    offset: int = 0  # where the old file's records after the snapshot start
    first_sequence: int = 1
    new_file: LogFile | None = None
    written: int = 0  # bytes of the rewritten state in the new file
    replaced: bool = False


def _finish_compaction(rewrite: _Rewrite, start: int, end: int, path: Path) -> None:
    """Copy the last of the tail, make the new file durable and rename it over the log."""
    if rewrite.source is None or rewrite.new_file is None:  # pragma: no cover - set before
        raise RuntimeError("compaction not started")
    _copy_range(rewrite.source, rewrite.new_file, start, end, None)
    rewrite.new_file.sync()
    os.replace(rewrite.tmp, path)
    rewrite.replaced = True


class FileTransactionLog:
    """The :class:`~tuco.ports.TransactionLog` kept in one append-only file.

    Online compaction starts after a commit once the file is over
    ``compact_min_bytes`` and over ``compact_ratio`` times the live state's
    size when last measured (at start-up, from ``snapshot``, and by each
    compaction, whose output is exactly that size): the Redis rule, so the
    rewrites cost amortised O(1) per byte written and the file stays within
    about ``compact_ratio`` times the largest live state. It needs ``snapshot``,
    a callable returning a copy of the store's state (:class:`~tuco.service.Service`
    supplies ``Store.snapshot``); without it, or with ``compact_min_bytes=0``,
    the log is never compacted online.
    """

    def __init__(
        self,
        path: Path,
        *,
        sync: SyncMode = SyncMode.ALWAYS,
        max_pending_bytes: int = 64 << 20,
        max_record_bytes: int = 1 << 31,
        sync_interval: float = 1.0,
        open_file: Callable[[Path], LogFile] | None = None,
        compact_min_bytes: int = 64 << 20,
        compact_ratio: float = 2.0,
        snapshot: Callable[[], Mapping[str, bytes]] | None = None,
    ) -> None:
        if compact_ratio <= 1:
            raise ValueError("compact_ratio must be above 1")
        self.path = path
        self.sync_mode = sync
        self.snapshot = snapshot
        self._max_record_bytes = max_record_bytes
        self._sync_interval = sync_interval
        self._open_file = open_file
        self._file: LogFile | None = None
        self._next_sequence = 1
        self._first_sequence = 1
        self._size = 0
        self._unsynced = False
        self._closing = False
        self._sync_task: asyncio.Task[None] | None = None
        # Held by each commit, so whoever else holds it runs between batches, when
        # every committed event is also applied (see _compact).
        self._write_lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()  # a file is never closed under a sync in flight
        self._compact_min_bytes = compact_min_bytes
        self._compact_ratio = compact_ratio
        self._live_bytes = 0
        self._compact_not_before = 0
        self._compaction: asyncio.Task[None] | None = None
        self._rewrite: _Rewrite | None = None
        self._commits = GroupCommit(self._commit, max_pending_bytes=max_pending_bytes)
        self.replay_report: ScanReport | None = None
        self.compactions = 0

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
        self._first_sequence = report.first_sequence
        self._size = report.valid_bytes
        self.replay_report = report

    async def run(self, apply: ApplyEvent) -> None:
        if self.replay_report is None:
            async for _ in self.read_events():
                pass
        if self._file is None:
            self._open_for_writing()
        if self._compact_min_bytes > 0 and self.snapshot is not None:
            # Measured once here, O(live keys); from now on each compaction measures it.
            self._live_bytes = HEADER_SIZE + sum(
                RECORD_OVERHEAD + len(key.encode()) + len(value) for key, value in self.snapshot().items()
            )
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
        async with self._write_lock:
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
            self._size += len(data)
        self._maybe_compact()
        return events

    def _maybe_compact(self) -> None:
        size = self._size
        if (
            self._compaction is None
            and self.snapshot is not None
            and self._compact_min_bytes > 0
            and not self._closing
            and size > self._compact_min_bytes
            and size > self._compact_ratio * self._live_bytes
            and size >= self._compact_not_before
        ):
            self._rewrite = _Rewrite(_compaction_path(self.path))
            self._compaction = asyncio.get_running_loop().create_task(
                self._compact(self._rewrite), name="tuco-log-compaction"
            )

    async def _compact(self, rewrite: _Rewrite) -> None:
        """Rewrite the log online; a failure is logged and leaves the old file in use, intact."""
        started = time.perf_counter()
        try:
            async with self._write_lock:
                # GroupCommit applies a batch in the same step as its commit returns, so
                # while this lock is held every committed event is applied: the snapshot
                # is the state at exactly the last sequence, which ends at byte _size.
                if self.snapshot is None or self._file is None or self.failure is not None or rewrite.stop.is_set():
                    return
                state = self.snapshot()
                last_sequence = self._next_sequence - 1
                rewrite.offset = self._size
                rewrite.source = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            opener = self._open_file or OsLogFile
            new_file = await self._in_thread(rewrite, _create_compaction_file, rewrite.tmp, opener)
            rewrite.new_file = new_file
            rewrite.written, rewrite.first_sequence = await self._in_thread(
                rewrite, _write_compacted, new_file, last_sequence, state, rewrite.stop
            )
            del state
            # Copy what was appended meanwhile without holding writers up; only the rest waits for them.
            copied = self._size
            await self._in_thread(rewrite, _copy_range, rewrite.source, new_file, rewrite.offset, copied, rewrite.stop)
            async with self._write_lock, self._sync_lock:
                if self.failure is not None or rewrite.stop.is_set():
                    raise _CompactionStopped
                bytes_before = self._size
                events_before = self._next_sequence - self._first_sequence
                await self._in_thread(rewrite, _finish_compaction, rewrite, copied, bytes_before, self.path)
                self._adopt(rewrite)
                await asyncio.to_thread(_sync_directory, self.path.parent)
            _logger.info(
                "log_compacted",
                path=str(self.path),
                events_before=events_before,
                events_after=self._next_sequence - self._first_sequence,
                bytes_before=bytes_before,
                bytes_after=self._size,
                seconds=round(time.perf_counter() - started, 3),
            )
        except _CompactionStopped:
            pass
        except Exception as exc:
            if rewrite.replaced:
                # The new file is the log now, but its name may not survive a crash.
                error = LogFailedError(f"cannot sync the directory of {self.path}: {exc}")
                error.__cause__ = exc
                self._commits.fail(error)
            else:
                self._compact_not_before = self._size + self._compact_min_bytes
                _logger.error("log_compaction_failed", path=str(self.path), error=str(exc), cause=repr(exc))
        finally:
            if rewrite.replaced and rewrite.new_file is not None:
                self._adopt(rewrite)  # cancelled after the rename: the new file is the log
            if rewrite.new_file is not None:
                rewrite.new_file.close()
                with contextlib.suppress(OSError):
                    os.unlink(rewrite.tmp)
            if rewrite.source is not None:
                os.close(rewrite.source)
            self._compaction = None

    async def _in_thread(
        self, rewrite: _Rewrite, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> _T:
        """Run ``function`` in a worker thread; if cancelled, stop it at its next check and wait for it.

        A thread cannot be interrupted, and the clean-up must not close files it still uses.
        """
        future = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            rewrite.stop.set()
            await asyncio.wait([future])
            raise

    def _adopt(self, rewrite: _Rewrite) -> None:
        """Append to the new file from now on: it holds every committed record."""
        new_file, rewrite.new_file = rewrite.new_file, None
        if new_file is None:  # pragma: no cover - checked by the callers
            return
        old, self._file = self._file, new_file
        if old is not None:
            old.close()
        self._size = rewrite.written + (self._size - rewrite.offset)
        self._first_sequence = rewrite.first_sequence
        self._live_bytes = rewrite.written
        self._unsynced = False
        self.compactions += 1

    async def _sync_every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._sync_interval)
            await self._sync_now()

    async def _sync_now(self) -> None:
        async with self._sync_lock:
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
        """Commit what is queued, end a compaction in progress, sync, stop the timer and close the file.

        A compaction not yet renamed into place gives up and leaves the old file as it was.
        """
        self._closing = True
        await self._commits.aclose()
        compaction = self._compaction
        if compaction is not None:
            if self._rewrite is not None:
                self._rewrite.stop.set()
            await compaction
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
