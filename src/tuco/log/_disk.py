"""File-system primitives of the file log: the open log file, its lock, durable creation and cutting."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO, Protocol

from tuco.core.codec import encode_header
from tuco.errors import LogFailedError

__all__ = [
    "LogFile",
    "OsLogFile",
    "create_log",
    "cut_file",
    "lock_exclusively",
    "sync_directory",
    "truncate_file",
    "write_and_sync",
]


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
            lock_exclusively(self.fd, path)
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

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def lock_exclusively(fd: int, path: Path) -> None:
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


def create_log(path: Path) -> None:
    """Create an empty log durably: header written and synced, then renamed into place.

    Writing a temporary file first means a crash can never leave a log
    without its header (which the next start would refuse as not a log).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".new")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, encode_header())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(fresh, path)  # unlike rename, never replaces a log another process just created
    finally:
        os.unlink(fresh)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_file(path: Path, size: int) -> None:
    with open(path, "r+b") as file:
        truncate_file(file, size)


def truncate_file(file: BinaryIO, size: int) -> None:
    file.truncate(size)
    file.flush()
    os.fsync(file.fileno())


def write_and_sync(file: LogFile, data: bytes) -> None:
    file.write(data)
    file.sync()
