"""The file log's state, and its online compaction (see :mod:`tuco.log.file`).

:class:`FileLogState` holds what the append-only file log knows of its file
(sizes, sequences, locks, tasks) and rewrites the file online as one entry per
live key; :class:`~tuco.log.file.FileTransactionLog` appends, syncs and replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import structlog

from tuco.core.distribution import SECONDS_BOUNDS, Distribution
from tuco.errors import LogError, LogFailedError
from tuco.log._compaction import (
    CompactionStoppedError,
    Entries,
    ExpiryTables,
    Rewrite,
    TokenTable,
    compaction_path,
    copy_range,
    create_compaction_file,
    finish_compaction,
    write_compacted,
)
from tuco.log._disk import (
    LogFile,
    OsLogFile,
    moved_away,
    release_replaced,
    sync_directory,
)
from tuco.log._scan import ScanReport
from tuco.log.batching import (
    ExpiryState,
    GroupCommit,
    Mutation,
    Outcome,
)

__all__ = ["FileLogState", "SyncMode"]

_logger = structlog.get_logger("tuco.log")
_CATCH_UP_PASSES = 4  # a compaction copies what was appended meanwhile at most this often before holding writers
_LAST_TAIL_BYTES = 1 << 20  # ... or until no more than this is left to copy while they wait
_T = TypeVar("_T")
_P = ParamSpec("_P")


class SyncMode(enum.StrEnum):
    """When a write is acknowledged relative to ``fsync``."""

    ALWAYS = "always"
    EVERYSEC = "everysec"


class FileLogState:
    """The file log's state and its online compaction, beneath :class:`~tuco.log.file.FileTransactionLog`."""

    def __init__(
        self,
        path: Path,
        *,
        sync: SyncMode = SyncMode.ALWAYS,
        max_pending_bytes: int = 64 << 20,
        sync_interval: float = 1.0,
        watch_interval: float = 1.0,
        open_file: Callable[[Path], LogFile] | None = None,
        sync_directory: Callable[[Path], None] = sync_directory,
        compact_min_bytes: int = 64 << 20,
        compact_ratio: float = 2.0,
        entries: Callable[[], Entries] | None = None,
    ) -> None:
        if compact_ratio <= 1:
            raise ValueError("compact_ratio must be above 1")
        self.path = path
        self.sync_mode = sync
        self.entries = entries
        self.expiry_state: Callable[[], ExpiryTables] | None = None
        """The store's deadlines and leases (:meth:`Store.expiry_state`): what compaction keeps beside the entries."""
        self.token_state: Callable[[], TokenTable] | None = None
        """The live tokens (:func:`~tuco.log._compaction.token_table`): kept by compaction too."""
        self.entry_bytes: Callable[[int], int] | None = None
        """The entries' size at that overhead each (:meth:`Store.entry_bytes`); else counted from ``entries``."""
        self._sync_interval = sync_interval
        self._watch_interval = watch_interval
        self._open_file = open_file
        self._sync_directory = sync_directory
        self._file: LogFile | None = None
        self._directory: int | None = None  # the locked data directory's descriptor
        self._next_sequence = 1
        self._first_sequence = 1
        self._entries_in_file = 0  # compacted entries before the first ordinary record
        self._size = 0
        self._synced_sequence = 0  # every event up to this one is known to be durable
        self._unsynced = False
        self._closing = False
        self._sync_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        # Held by each commit, so whoever else holds it runs between batches, when
        # every committed event is also applied (see _compact).
        self._write_lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()  # a file is never closed under a sync in flight
        self._compact_min_bytes = compact_min_bytes
        self._compact_ratio = compact_ratio
        self._live_bytes = 0
        self._compact_not_before = 0
        self._compaction: asyncio.Task[None] | None = None
        self._rewrite: Rewrite | None = None
        self._commits = GroupCommit(self._commit, max_pending_bytes=max_pending_bytes, txns_together=True)
        self._mod_revision: Callable[[str], int] = _nothing_applied  # set by run()
        self._expiry: ExpiryState | None = None  # set by run()
        self.replay_report: ScanReport | None = None
        self.compactions = 0
        self._sync_seconds = Distribution(SECONDS_BOUNDS)

    def _maybe_compact(self) -> None:
        size = self._size
        if (
            self._compaction is None
            and self.entries is not None
            and self._compact_min_bytes > 0
            and not self._closing
            and size > self._compact_min_bytes
            and size > self._compact_ratio * self._live_bytes
            and size >= self._compact_not_before
        ):
            self._rewrite = Rewrite(compaction_path(self.path))
            self._compaction = asyncio.get_running_loop().create_task(
                self._compact(self._rewrite), name="tuco-log-compaction"
            )

    async def _compact(self, rewrite: Rewrite) -> None:
        """Rewrite the log online; a failure is logged and leaves the old file in use, intact."""
        started = time.perf_counter()
        try:
            async with self._write_lock:
                # GroupCommit applies a batch in the same step as its commit returns, so
                # while this lock is held every committed event is applied: the snapshot
                # is the state at exactly the last sequence, which ends at byte _size.
                if self.entries is None or self._file is None or self.failure is not None or rewrite.stop.is_set():
                    return
                state = self.entries()
                expiry = self.expiry_state() if self.expiry_state is not None else None
                tokens = self.token_state() if self.token_state is not None else None
                last_sequence = self._next_sequence - 1
                rewrite.offset = self._size
                source = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                opened = os.fstat(source)
                if (opened.st_dev, opened.st_ino) != self._file.identity:  # the path names another file now
                    os.close(source)
                    self._commits.fail(LogFailedError(f"{moved_away(self.path)}: writes stopped"))
                    return
                rewrite.source = source
            opener = self._open_file or OsLogFile
            new_file = await self._in_thread(rewrite, create_compaction_file, rewrite.tmp, opener)
            rewrite.new_file = new_file
            rewrite.written, rewrite.first_sequence = await self._in_thread(
                rewrite, write_compacted, new_file, last_sequence, state, rewrite.stop, expiry, tokens
            )
            rewrite.entries = len(state) + (len(expiry[2]) if expiry is not None else 0) + len(tokens or ())
            del state
            # Copy what was appended meanwhile, and sync, without holding writers up; again for what was
            # appended during that, until little is left: only the rest waits for them (under the lock
            # below), and a whole live state copied or synced there stalled every writer for its length.
            copied = rewrite.offset
            for _ in range(_CATCH_UP_PASSES):
                end = self._size
                await self._in_thread(rewrite, copy_range, rewrite.source, new_file, copied, end, rewrite.stop)
                copied = end
                await self._in_thread(rewrite, new_file.sync)
                if self._size - copied <= _LAST_TAIL_BYTES:
                    break
            async with self._write_lock, self._sync_lock:
                if self.failure is not None or rewrite.stop.is_set():
                    raise CompactionStoppedError
                bytes_before = self._size
                events_before = self._entries_in_file + self._next_sequence - self._first_sequence
                await self._in_thread(rewrite, finish_compaction, rewrite, copied, bytes_before, self.path)
                self._adopt(rewrite)
                await asyncio.to_thread(self._sync_directory, self.path.parent)
            # Cut back only once the rename is durable: before, a crash could leave the old name on this file.
            if (replaced := rewrite.replaced_file) is not None:
                rewrite.replaced_file = None
                _close_off_the_loop(functools.partial(release_replaced, replaced))
            _logger.info(
                "log_compacted",
                path=str(self.path),
                events_before=events_before,
                events_after=self._entries_in_file + self._next_sequence - self._first_sequence,
                bytes_before=bytes_before,
                bytes_after=self._size,
                seconds=round(time.perf_counter() - started, 3),
            )
        except CompactionStoppedError:
            pass
        except Exception as exc:
            if rewrite.replaced:
                # The new file is the log now, but its name may not survive a crash.
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                error = LogFailedError(f"cannot sync the directory of {self.path} ({reason}) after compacting the log")
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
            if rewrite.replaced_file is not None:  # the rename's durability unknown: closed, not cut back
                _close_off_the_loop(rewrite.replaced_file.close)
            if rewrite.source is not None:
                if rewrite.replaced:  # the old file's: its last close frees its blocks
                    _close_off_the_loop(functools.partial(os.close, rewrite.source))
                else:
                    os.close(rewrite.source)
            self._compaction = None

    async def _in_thread(
        self, rewrite: Rewrite, function: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
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

    def _adopt(self, rewrite: Rewrite) -> None:
        """Append to the new file from now on: it holds every committed record."""
        new_file, rewrite.new_file = rewrite.new_file, None
        if new_file is None:  # pragma: no cover - checked by the callers
            return
        rewrite.replaced_file, self._file = self._file, new_file
        self._size = rewrite.written + (self._size - rewrite.offset)
        self._first_sequence = rewrite.first_sequence
        self._entries_in_file = rewrite.entries
        self._live_bytes = rewrite.written
        # What was appended while the rewrite ran is part of its output too: the next rewrite waits until the
        # file grew by as much again, or back-to-back rewrites under heavy writing would rewrite the state for
        # every few bytes written (with 64 KiB values, one compaction after another).
        self._compact_not_before = int(self._size * self._compact_ratio)
        self._unsynced = False
        self.compactions += 1

    @property
    def failure(self) -> LogError | None:
        return self._commits.failure

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        """Write one batch (the group commit's callback): :class:`~tuco.log.file.FileTransactionLog`'s."""
        raise NotImplementedError


def _nothing_applied(key: str) -> int:
    return 0


def _close_off_the_loop(close: Callable[[], None]) -> None:
    """Run ``close`` (of a descriptor of the replaced log file) in a worker thread.

    The last close of a replaced file frees its blocks, inside ``close``: about 20 ms for a 67 MB log on
    this machine's disk, which on the event loop stalled every request once per compaction (and, in a
    thread, still held the log's next sync: the writer's descriptor is released by :func:`release_replaced`).
    """

    def quietly() -> None:
        with contextlib.suppress(OSError):  # a descriptor of ours, open: nothing to report, nothing to retry
            close()

    asyncio.get_running_loop().run_in_executor(None, quietly)
