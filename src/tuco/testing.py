"""Fakes for testing code above the log, shipped with the package (like ``httpx.MockTransport``).

``MemoryLog`` is a complete in-memory :class:`~tuco.ports.TransactionLog`;
``RecordingLogFile`` is a real log file that records the order of its writes,
syncs and truncations; ``FailingDisk`` opens real log files that fail the way
disks do (a partial write then ``ENOSPC``, a sync that fails with ``EIO``), to
show what the service does when its disk breaks.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from tuco.core.events import Event, EventType, Precondition
from tuco.core.store import Store
from tuco.errors import LogError, LogFailedError
from tuco.log._disk import sync_directory
from tuco.log.batching import GroupCommit, Mutation, Outcome, sequence_batch
from tuco.log.file import OsLogFile
from tuco.ports import CommitSink

__all__ = ["FailingDisk", "FailingLogFile", "LogFileCall", "MemoryLog", "RecordingLogFile", "RecordingSink"]


class RecordingSink:
    """A :class:`~tuco.ports.CommitSink` that applies to a store and keeps every event it was handed."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store if store is not None else Store()
        self.events: list[Event] = []

    def apply(self, event: Event) -> object:
        self.events.append(event)
        return self.store.apply(event)

    def mod_revision(self, key: str) -> int:
        return self.store.mod_revision(key)


class MemoryLog:
    """A transaction log kept in a list; same group-commit path as the real ones."""

    def __init__(self, events: Sequence[Event] = ()) -> None:
        self.events: list[Event] = list(events)
        self._commits = GroupCommit(self._commit)
        self._mod_revision: Callable[[str], int] = lambda key: 0  # set by run()
        self.fail_next_commit: LogFailedError | None = None

    @property
    def failure(self) -> LogError | None:
        return self._commits.failure

    async def open(self) -> None:
        """Nothing to acquire: the list is already here."""

    async def read_events(self) -> AsyncIterator[Sequence[Event]]:
        yield list(self.events)

    async def run(self, sink: CommitSink) -> None:
        self._mod_revision = sink.mod_revision
        self._commits.start(sink.apply)

    def write_put(self, key: str, value: bytes, precondition: Precondition | None = None) -> Awaitable[Event]:
        return self._commits.submit(EventType.PUT, key, value, precondition)

    def write_delete(self, key: str, precondition: Precondition | None = None) -> Awaitable[Event]:
        return self._commits.submit(EventType.DELETE, key, b"", precondition)

    async def catch_up(self) -> None:
        """Nothing to catch up with: one process, one list."""

    def describe(self) -> Mapping[str, object]:
        return {"backend": "memory", "last_sequence": len(self.events)}

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        if self.fail_next_commit is not None:
            raise self.fail_next_commit
        outcomes = sequence_batch(batch, len(self.events) + 1, self._mod_revision)
        self.events.extend(outcome for outcome in outcomes if isinstance(outcome, Event))
        return outcomes

    async def aclose(self) -> None:
        await self._commits.aclose()


class LogFileCall(NamedTuple):
    """One call a :class:`RecordingLogFile` saw, in the order it happened."""

    operation: str  # "write", "sync" or "truncate"; "fail-write", "fail-sync", "fail-truncate" when it raised
    name: str  # the file's name: "tuco.log", or "tuco.log.compact" for a compaction's new file
    size: int  # bytes written by this call (write), or the file's size once the call returned
    at: float  # time.monotonic() when the call returned


class RecordingLogFile(OsLogFile):
    """A real log file that appends every write, sync and truncate to ``journal``, in order.

    Tests put their own entries (an acknowledgement, say) in the same list to
    check what happened before what: for instance that a write was synced
    before it was acknowledged.
    """

    def __init__(self, path: Path, journal: list[LogFileCall]) -> None:
        super().__init__(path)
        self.name = path.name
        self.journal = journal

    def _record(self, operation: str, size: int | None = None) -> None:
        if size is None:
            size = os.fstat(self.fd).st_size
        self.journal.append(LogFileCall(operation, self.name, size, time.monotonic()))

    def write(self, data: bytes) -> None:
        super().write(data)
        self._record("write", len(data))

    def sync(self) -> None:
        super().sync()
        self._record("sync")

    def truncate(self, size: int) -> None:
        super().truncate(size)
        self._record("truncate")


class FailingDisk:
    """Opens real log files that fail the way disks do, when told to; every call lands in ``journal``.

    Pass ``disk.open`` as ``FileTransactionLog(open_file=...)``. ``space_left``
    (bytes, ``None`` for unlimited) makes a write that does not fit write what
    fits and then raise ``ENOSPC``, as a full disk does; ``sync_error`` (an
    errno such as ``errno.EIO``) makes syncs fail without syncing, as a dying
    disk does; ``truncate_error`` does the same for cutting the file back, and
    ``directory_sync_error`` for :meth:`sync_directory` (pass it as
    ``FileTransactionLog(sync_directory=...)``).
    """

    def __init__(self) -> None:
        self.space_left: int | None = None
        self.sync_error: int | None = None
        self.truncate_error: int | None = None
        self.directory_sync_error: int | None = None
        self.journal: list[LogFileCall] = []

    def open(self, path: Path) -> FailingLogFile:
        return FailingLogFile(path, self)

    def sync_directory(self, directory: Path) -> None:
        """Sync ``directory`` (after a rename in it), or fail with ``directory_sync_error``."""
        if self.directory_sync_error is not None:
            self.journal.append(LogFileCall("fail-sync-directory", directory.name, 0, time.monotonic()))
            raise OSError(self.directory_sync_error, os.strerror(self.directory_sync_error))
        sync_directory(directory)
        self.journal.append(LogFileCall("sync-directory", directory.name, 0, time.monotonic()))


class FailingLogFile(RecordingLogFile):
    """A real log file that fails as its :class:`FailingDisk` says."""

    def __init__(self, path: Path, disk: FailingDisk) -> None:
        super().__init__(path, disk.journal)
        self.disk = disk

    def write(self, data: bytes) -> None:
        space = self.disk.space_left
        if space is not None and len(data) > space:
            if space:
                super().write(data[:space])
            self.disk.space_left = 0
            self._record("fail-write", space)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if space is not None:
            self.disk.space_left = space - len(data)
        super().write(data)

    def sync(self) -> None:
        if self.disk.sync_error is not None:
            self._record("fail-sync")
            raise OSError(self.disk.sync_error, os.strerror(self.disk.sync_error))
        super().sync()

    def truncate(self, size: int) -> None:
        if self.disk.truncate_error is not None:
            self._record("fail-truncate")
            raise OSError(self.disk.truncate_error, os.strerror(self.disk.truncate_error))
        super().truncate(size)
