"""Disk fakes: real log files that record the order of their calls, or fail the way disks do.

Kept apart from the memory fakes and the contract suite because they build on the
file log (:class:`~tuco.log.file.OsLogFile`), which those must not load.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import NamedTuple

from tuco.log._disk import sync_directory
from tuco.log.file import OsLogFile

__all__ = ["FailingDisk", "FailingLogFile", "LogFileCall", "RecordingLogFile"]


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
