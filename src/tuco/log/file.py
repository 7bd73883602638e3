"""The append-only file transaction log: the embedded default.

Durability rule: a write is acknowledged only after its record is on stable
storage. In ``always`` mode each group-committed batch is written and
``fdatasync``-ed (in a worker thread, so the event loop keeps gathering the
next batch) before anyone is acknowledged. In ``everysec`` mode a batch is
acknowledged once written to the kernel, and a timer syncs at least once a
second: a power loss (not a process crash) can take the last second of writes.
A failed ``fsync`` is never retried: after it the kernel may have dropped the
pages, so the log stops taking writes instead.

The state after a restart must be the state that was served, so a batch that
fails (a write the disk took only part of, a failed sync, or a log path that no
longer names the open file) is cut back off the file, to the offset where it
began, before its writers hear "not stored"; if even that fails, the error says
the batch may come back. In ``everysec`` mode a failed timer sync cannot be
undone: the writes since the last good sync were acknowledged and are served;
the error names them, and a restart replays whatever the file still holds.

The lock that keeps a second process out is on the data directory, which stays
put, and before acknowledging each batch (and every ``watch_interval`` while
idle) the log checks that its path still names the file it has open: a log
deleted or replaced under a running server fails, instead of taking writes into
a file no restart will read.

Compaction rewrites the log as one entry per live key, with the key's
revisions (format version 2), the Redis AOF way: the store's entries are
copied between two batches at sequence S, written to a new file
in a worker thread while batches keep being appended to the old one, and then,
between two batches again, the old file's records after S are copied over and
the new file atomically replaces the old. Only that last copy holds writers up.
The new file is locked before it is renamed into place, so no second process
can open the log in between.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import cast

import structlog

from tuco._tasks import stop_task
from tuco.core.codec import ENTRY_OVERHEAD, HEADER_SIZE, encode_event, encode_records
from tuco.core.events import Event
from tuco.core.txn import TxnOutcome
from tuco.errors import LogClosedError, LogCorruptError, LogFailedError
from tuco.log._compaction import (
    CompactionReport,
    Entries,
    compact_log,
)
from tuco.log._disk import (
    BatchRefusedError,
    LogFile,
    OsLogFile,
    RefusedBatch,
    append_batch,
    create_log,
    cut_file,
    ensure_directory,
    identity_at,
    lock_directory,
    moved_away,
    read_refused,
    record_refused,
    refused_path,
    timed_sync,
)
from tuco.log._file_state import FileLogState, SyncMode
from tuco.log._scan import LogReader, ScanReport, repair_log
from tuco.log.batching import (
    Mutation,
    Outcome,
    has_conditions,
    sequence_batch,
    wall_clock_ms,
)
from tuco.log.group_writes import WritesThroughGroupCommit
from tuco.ports import CommitSink, LogStatistics

__all__ = [
    "CompactionReport",
    "Entries",
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


class FileTransactionLog(FileLogState, WritesThroughGroupCommit):
    """The :class:`~tuco.ports.TransactionLog` kept in one append-only file.

    Online compaction starts after a commit once the file is over
    ``compact_min_bytes`` and over ``compact_ratio`` times the live state's
    size when last measured (at start-up, from ``snapshot``, and by each
    compaction, whose output is exactly that size), and, after a compaction,
    over ``compact_ratio`` times the file's size right after it (the state
    plus what was appended while it was rewritten): the Redis rule, so the
    rewrites cost amortised O(1) per byte written and the file stays within
    about ``compact_ratio`` times the largest live state plus one rewrite's tail. It needs ``entries``,
    a callable returning a copy of the store's entries with their revisions
    (:meth:`Store.entries <tuco.core.store.Store.entries>` of the store the log
    commits to); without it, or with ``compact_min_bytes=0``, the log is never
    compacted online.
    """

    async def read_events(self) -> AsyncIterator[Sequence[Event]]:
        """Replay the file, creating it if missing and cutting a torn tail with a warning.

        The file is opened for writing, and so locked, before it is read: a
        second process must not replay (or cut the tail of) a log still in use.
        """
        await self.open()
        try:
            async for batch in self._replay():
                yield batch
        except BaseException:
            self._release()
            raise

    async def open(self) -> None:
        """Lock the data directory, create the log if it is missing, then open it for appending.

        Never blocks on what is at the path: anything but a regular file is refused with a
        :class:`LogFailedError` naming the path and what is there.
        """
        if self._file is not None:
            return
        ensure_directory(self.path.parent)
        self._directory = lock_directory(self.path)
        try:
            refused = read_refused(self.path)
            if refused is not None:
                raise LogFailedError(
                    f"{self.path}: the last run could not cut off {refused.describe()} (from offset {refused.offset}), "
                    "whose writers were told they were not stored; refusing to start until an operator decides: "
                    f"'tuco log repair {self.path}' cuts them, deleting {refused_path(self.path)} keeps them"
                )
            try:
                os.stat(self.path)
            except FileNotFoundError:
                try:
                    create_log(self.path)
                except OSError as exc:
                    raise LogFailedError(f"cannot create {self.path}: {exc.strerror or exc}") from exc
            self._open_for_writing()
        except BaseException:
            self._release()
            raise

    async def _replay(self) -> AsyncIterator[Sequence[Event]]:
        reader = LogReader(self.path)
        batches = iter(reader)
        try:
            for batch in batches:
                yield batch
        except OSError as exc:
            raise LogFailedError(f"cannot read {self.path}: {exc.strerror}") from exc
        finally:
            # A consumer that stops early (an error while applying) leaves us suspended: closing the reader here
            # closes the file now, not when a collection finalizes the file before the reader (ResourceWarning).
            batches.close()
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
                cut_file(self.path, report.valid_bytes)
            except OSError as exc:
                raise LogFailedError(f"cannot cut the torn tail of {self.path}: {exc.strerror}") from exc
        self._next_sequence = report.last_sequence + 1
        self._synced_sequence = report.last_sequence
        self._first_sequence = report.first_sequence
        self._entries_in_file = report.entries
        self._size = report.valid_bytes
        self.replay_report = report

    async def run(self, sink: CommitSink) -> None:
        if self.replay_report is None:
            async for _ in self.read_events():
                pass
        if self._file is None:
            self._open_for_writing()
        if self._compact_min_bytes > 0 and self.entries is not None:
            # Measured once here (from now on each compaction measures it): in O(1) from the store's own count,
            # which a million keys made 0.5 s of start-up (a copy of the entries and a pass over it) when summed.
            if self.entry_bytes is not None:
                self._live_bytes = HEADER_SIZE + self.entry_bytes(ENTRY_OVERHEAD)
            else:
                self._live_bytes = HEADER_SIZE + sum(
                    ENTRY_OVERHEAD + len(key.encode()) + len(entry[0]) for key, entry in self.entries().items()
                )
        self._mod_revision = sink.mod_revision
        self._expiry = sink
        self._commits.start(sink.apply)
        loop = asyncio.get_running_loop()
        if self.sync_mode is SyncMode.EVERYSEC:
            self._sync_task = loop.create_task(self._sync_every_interval(), name="tuco-log-sync")
        if self._watch_interval > 0:
            self._watch_task = loop.create_task(self._watch_the_path(), name="tuco-log-watch")

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

    def _release(self) -> None:
        """Close the file and unlock the directory."""
        self._close_file()
        if self._directory is not None:
            os.close(self._directory)
            self._directory = None

    def now_ms(self) -> int:
        """This machine's clock: the only writer decides expiry, so its clock is the one that counts."""
        return wall_clock_ms()

    async def catch_up(self) -> None:
        """Nothing to do: this process is the only writer, and its reads see every commit."""

    def describe(self) -> Mapping[str, object]:
        return {"backend": "file", "last_sequence": self._next_sequence - 1, "sync": self.sync_mode.value}

    def statistics(self) -> LogStatistics:
        commits = self._commits
        return LogStatistics(commits.batch_sizes, commits.commit_seconds, self._sync_seconds, self.compactions)

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        async with self._write_lock:
            file = self._file
            if file is None:
                raise LogClosedError("the log is not open")
            if self.failure is not None:  # a timer sync failed while this batch waited for the lock
                raise self.failure
            sequence = self._next_sequence
            outcomes = sequence_batch(batch, sequence, self._mod_revision, self._expiry)
            # Without conditions or deadlines every outcome is an event of the plain kind: no need to look.
            conditional = has_conditions(batch)
            if batch[0].txn is not None:  # transactions only: one record each, none for one that wrote nothing
                events = [o.event for o in outcomes if isinstance(o, TxnOutcome) and o.event is not None]
            else:
                events = cast("list[Event]", [o for o in outcomes if isinstance(o, Event)] if conditional else outcomes)
            if not events:  # every condition refused its write: nothing to record
                return outcomes
            data: bytes | list[bytes]
            if not conditional or (len(events) == len(batch) and not any(m.expiry is not None for m in batch)):
                parts, split = encode_records(events)
                data = parts if split else b"".join(parts)  # large values go to the disk from their own buffers
            else:
                data = b"".join([encode_event(e) for e in events])
            size = len(data) if isinstance(data, bytes) else sum(map(len, data))
            start = self._size
            try:
                if self.sync_mode is SyncMode.ALWAYS:
                    await asyncio.to_thread(append_batch, file, data, self.path, True, self._sync_seconds)
                else:
                    append_batch(file, data, self.path, False)
                    self._unsynced = True
            except BatchRefusedError as refused:
                raise await self._undo(file, refused, start, sequence, sequence + len(events) - 1) from None
            self._next_sequence = sequence + len(events)
            if self.sync_mode is SyncMode.ALWAYS:
                self._synced_sequence = self._next_sequence - 1
            self._size = start + size
        self._maybe_compact()
        return outcomes

    async def _undo(
        self, file: LogFile, refused: BatchRefusedError, start: int, first: int, last: int
    ) -> LogFailedError:
        """Cut a refused batch back off the file, so no restart replays what its writers were told is not stored."""
        batch = f"the failed batch, {_sequences(first, last)}"
        try:
            await asyncio.to_thread(file.truncate, start)
        except OSError as exc:
            cut_failed = f"{refused}, and cutting {batch}, back to offset {start} failed too ({exc.strerror or exc})"
            try:
                await asyncio.to_thread(record_refused, self.path, RefusedBatch(start, first, last))
            except OSError as marker_exc:
                error = LogFailedError(
                    f"{cut_failed}, as did recording that for the next start ({marker_exc.strerror or marker_exc}): "
                    "it was not acknowledged, but a restart may replay it"
                )
            else:
                error = LogFailedError(
                    f"{cut_failed}: it was not acknowledged, and the next start refuses until an operator runs "
                    f"'tuco log repair {self.path}' to cut it"
                )
        else:
            error = LogFailedError(f"{refused}: {batch}, was cut from the file and will not be replayed")
        error.__cause__ = refused.__cause__
        return error

    async def _watch_the_path(self) -> None:
        """Fail the log, even while idle, once its path no longer names the open file."""
        while True:
            await asyncio.sleep(self._watch_interval)
            async with self._write_lock:  # between batches, and never mid-compaction
                file = self._file
                if file is None or self.failure is not None:
                    return
                if identity_at(self.path) != file.identity:
                    self._commits.fail(LogFailedError(f"{moved_away(self.path)}: writes stopped"))
                    return

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
            covered = self._next_sequence - 1  # everything written so far is in what this sync flushes
            try:
                await asyncio.to_thread(timed_sync, file, self._sync_seconds)
            except OSError as exc:
                # Acknowledged already, so not to be cut; but the kernel may have dropped them.
                first, last = self._synced_sequence + 1, self._next_sequence - 1
                reason = f"cannot sync {self.path} ({exc.strerror or exc})"
                if first > last:
                    error = LogFailedError(f"{reason}; every acknowledged write had been synced before")
                else:
                    error = LogFailedError(
                        f"{reason}: the writes acknowledged since the last good sync, {_sequences(first, last)}, "
                        "may not be on disk; a restart replays what the file still holds"
                    )
                error.__cause__ = exc
                self._commits.fail(error)
            else:
                self._synced_sequence = max(self._synced_sequence, covered)

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
        for task in (self._sync_task, self._watch_task):
            if task is not None:
                await stop_task(task)  # a cancel of this close still reaches its caller
        self._sync_task = self._watch_task = None
        if self._file is not None:
            self._unsynced = True  # a sync cancelled above may not have finished: always sync once more
            await self._sync_now()
        self._release()


def _sequences(first: int, last: int) -> str:
    return f"sequence {first}" if first == last else f"sequences {first} to {last}"
