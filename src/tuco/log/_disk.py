"""File-system primitives of the file log: the open log file, its locks, durable creation and cutting.

Nothing here may block on what happens to be at a path: every open is
non-blocking and refuses anything but a regular file (a FIFO at the log path
would otherwise hang start-up, deaf to SIGTERM).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from tuco.core.codec import encode_header
from tuco.core.distribution import Distribution
from tuco.errors import LogFailedError

__all__ = [
    "BatchRefusedError",
    "LogFile",
    "OsLogFile",
    "RefusedBatch",
    "append_batch",
    "clear_refused",
    "create_log",
    "cut_file",
    "ensure_directory",
    "hold_directory",
    "identity_at",
    "lock_directory",
    "lock_exclusively",
    "moved_away",
    "open_regular_file",
    "read_refused",
    "record_refused",
    "refused_path",
    "release_replaced",
    "sync_directory",
    "timed_sync",
    "truncate_file",
]

_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024  # buffers one writev takes
# A replaced log's blocks are given back this much at a time, with this pause between, so the filesystem
# frees (and, mounted with ``discard``, trims) them over several journal commits: freed at its last close,
# 300 MB of 64 KiB values held the log's next sync for 40 to 56 ms on this machine's disk.
_RELEASE_SLICE = 16 << 20
_RELEASE_PAUSE = 0.01
_RELEASE_CUTS = 32  # ...in at most this many cuts: a 10 GB log is released in about a second, not eight

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFREG: "a regular file",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a file")


def _not_a_log(path: Path, mode: int) -> LogFailedError:
    return LogFailedError(f"{path} is {_kind(mode)}, not a regular file: refusing to use it as the log")


def _open_regular(path: Path, flags: int) -> int:
    """Open ``path`` without blocking whatever is there; refuse (closing it) anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        raise _not_a_log(path, stat.S_IFDIR) from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise _not_a_log(path, stat.S_IFIFO) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_log(path, mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular_file(path: Path, *, writable: bool = False) -> BinaryIO:
    """Open a log for reading (or reading and writing), refusing without blocking anything but a regular file."""
    fd = _open_regular(path, os.O_RDWR if writable else os.O_RDONLY)
    return os.fdopen(fd, "r+b" if writable else "rb")


def identity_at(path: Path) -> tuple[int, int] | None:
    """The (device, inode) ``path`` names now, or ``None`` if it names nothing."""
    try:
        named = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return named.st_dev, named.st_ino


def ensure_directory(directory: Path) -> None:
    """Create the data directory if missing; refuse, naming it, a path that is something else."""
    try:
        mode = os.stat(directory).st_mode
    except FileNotFoundError:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogFailedError(
                f"cannot create the data directory {directory} (TUCO_DATA_DIR): {exc.strerror or exc}"
            ) from exc
        return
    except OSError as exc:
        raise LogFailedError(f"cannot use the data directory {directory} (TUCO_DATA_DIR): {exc.strerror}") from exc
    if not stat.S_ISDIR(mode):
        raise LogFailedError(f"the data directory {directory} (TUCO_DATA_DIR) is {_kind(mode)}, not a directory")


def lock_directory(path: Path) -> int:
    """Lock the directory of the log at ``path`` exclusively; return its descriptor, to close to unlock.

    The directory stays put while the log file itself may be removed, renamed
    or replaced, so its lock keeps out a second process that a lock on the
    file alone would let in.
    """
    directory = path.parent
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise LogFailedError(f"the data directory {directory} (TUCO_DATA_DIR) is not a directory") from None
    except OSError as exc:
        raise LogFailedError(f"cannot open the directory {directory}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LogFailedError(f"{path} is locked by another tuco process (it holds {directory})") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def hold_directory(path: Path) -> Iterator[None]:
    """Hold the log's directory lock for the ``with`` block (the offline tools, against a running server)."""
    fd = lock_directory(path)
    try:
        yield
    finally:
        os.close(fd)


class LogFile(Protocol):
    """The two operations the log needs from an open file; swapped in tests to inject failures."""

    def write(self, data: bytes) -> None:
        """Append all of ``data``."""
        ...

    def sync(self) -> None:
        """Make everything written so far durable."""
        ...

    def truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes, durably."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...

    @property
    def identity(self) -> tuple[int, int]:
        """The (device, inode) of the open file, to tell whether its path still names it."""
        ...


class OsLogFile:
    """A log file opened for appending, exclusively locked against a second writer."""

    def __init__(self, path: Path) -> None:
        self.fd = _open_regular(path, os.O_WRONLY | os.O_APPEND)
        try:
            lock_exclusively(self.fd, path)
            opened = os.fstat(self.fd)
        except BaseException:
            os.close(self.fd)
            raise
        self._identity = (opened.st_dev, opened.st_ino)

    @property
    def identity(self) -> tuple[int, int]:
        return self._identity

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def writev(self, parts: Sequence[bytes]) -> None:
        """Append all of ``parts``, in order, with as few ``writev`` calls as the kernel allows, joining nothing."""
        index = 0
        count = len(parts)
        while index < count:
            chunk = parts[index : index + _IOV_MAX]
            written = os.writev(self.fd, chunk)
            for part in chunk:
                size = len(part)
                if written < size:  # a short write ends inside this part: finish it, then go on from the next
                    if written:
                        rest = memoryview(part)[written:]
                        while rest:
                            rest = rest[os.write(self.fd, rest) :]
                        index += 1
                    break
                written -= size
                index += 1

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def release_replaced(file: LogFile) -> None:
    """Close a log file that a compaction renamed over, first cutting it back a slice at a time (worker thread).

    Only a file with no name left is cut: one an operator hard-linked (a copy
    kept by hand) is closed as it is. A test's file that is not an
    :class:`OsLogFile` is just closed.
    """
    try:
        if isinstance(file, OsLogFile):
            opened = os.fstat(file.fd)
            size = opened.st_size if opened.st_nlink == 0 else 0
            step = max(_RELEASE_SLICE, -(-size // _RELEASE_CUTS))
            while size > 0:
                size = max(0, size - step)
                os.ftruncate(file.fd, size)
                time.sleep(_RELEASE_PAUSE)
    finally:
        file.close()


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
    fresh = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fresh)  # left by a crash during creation; never another process's: the directory is locked
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
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
    with open_regular_file(path, writable=True) as file:
        truncate_file(file, size)


def truncate_file(file: BinaryIO, size: int) -> None:
    file.truncate(size)
    file.flush()
    os.fsync(file.fileno())


@dataclass(frozen=True, slots=True)
class RefusedBatch:
    """A batch whose writers were told "not stored" but that could not be cut off the log.

    Recorded beside the log so that the next start refuses, rather than
    replaying writes their clients were told had failed, until an operator
    decides: ``tuco log repair`` cuts the batch, deleting the record keeps it.
    """

    offset: int  # where the batch starts: the log's size before it
    first_sequence: int
    last_sequence: int

    def describe(self) -> str:
        if self.first_sequence == self.last_sequence:
            return f"sequence {self.first_sequence}"
        return f"sequences {self.first_sequence} to {self.last_sequence}"


def refused_path(path: Path) -> Path:
    """Where a :class:`RefusedBatch` of the log at ``path`` is recorded."""
    return path.with_name(path.name + ".refused")


def record_refused(path: Path, batch: RefusedBatch) -> None:
    """Record ``batch`` durably beside the log: written, synced, renamed into place, directory synced."""
    marker = refused_path(path)
    fresh = marker.with_name(marker.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fresh)
    data = json.dumps({"offset": batch.offset, "first": batch.first_sequence, "last": batch.last_sequence})
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(fresh, marker)
    sync_directory(path.parent)


def read_refused(path: Path) -> RefusedBatch | None:
    """The refused batch recorded beside the log at ``path``, if any."""
    marker = refused_path(path)
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LogFailedError(f"cannot read {marker}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "rb") as file:
            fields = json.loads(file.read(4096))
        return RefusedBatch(int(fields["offset"]), int(fields["first"]), int(fields["last"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LogFailedError(f"{marker} is not a record of a refused batch; move it away to start") from exc


def clear_refused(path: Path) -> None:
    """Remove the record of a refused batch, durably."""
    os.unlink(refused_path(path))
    sync_directory(path.parent)


class BatchRefusedError(Exception):
    """A batch that must not be acknowledged: its message says why; the OSError, if any, is its cause."""


def append_batch(
    file: LogFile, data: bytes | list[bytes], path: Path, sync: bool, sync_times: Distribution | None = None
) -> None:
    """Append a batch (and sync it, counting the sync's time into ``sync_times``), then check the path.

    One call, so ``always`` mode costs one worker-thread hop per batch; the
    check that ``path`` still names the file is one ``stat`` per batch. ``data`` may be buffers to write in order
    (large values kept apart, see :func:`~tuco.core.codec.encode_records`): an
    :class:`OsLogFile` writes them with ``writev``; any other file (a test's
    failing disk, whose ``write`` decides what fits) gets one ``write`` of them joined.
    """
    try:
        if isinstance(data, bytes):
            file.write(data)
        elif type(file) is OsLogFile:
            file.writev(data)
        else:
            file.write(b"".join(data))
    except OSError as exc:
        raise BatchRefusedError(f"cannot write {path} ({exc.strerror or exc})") from exc
    if sync:
        try:
            timed_sync(file, sync_times)
        except OSError as exc:
            raise BatchRefusedError(f"cannot sync {path} ({exc.strerror or exc})") from exc
    if identity_at(path) != file.identity:
        raise BatchRefusedError(moved_away(path))


def timed_sync(file: LogFile, times: Distribution | None) -> None:
    """Sync the file (called in a worker thread) and count how long it took into ``times``."""
    started = time.perf_counter()
    file.sync()
    if times is not None:
        times.observe(time.perf_counter() - started)


def moved_away(path: Path) -> str:
    return f"{path} no longer names the log file this process has open (removed or replaced)"
