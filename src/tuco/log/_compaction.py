"""Compaction: rewriting a log as one entry per live key, offline and as the running log's rewrite.

The rewritten log is format version 2: its compacted section keeps each live
key's value, create revision, mod revision and version, so revisions (and the
ETags built from them) survive a compaction and a restart unchanged, and a
revision is never handed out twice.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tuco.core.codec import (
    FORMAT_VERSION,
    HEADER_SIZE,
    encode_entry,
    encode_header,
    encode_lease_entry,
    encode_record,
    encode_token_entry,
)
from tuco.core.events import EventType
from tuco.core.store import Store
from tuco.errors import LogCorruptError, LogFailedError
from tuco.log._disk import (
    LogFile,
    OsLogFile,
    hold_directory,
    lock_exclusively,
    open_regular_file,
    read_refused,
    sync_directory,
)
from tuco.log._scan import LogReader

__all__ = [
    "SYNC_EVERY_BYTES",
    "CompactionReport",
    "CompactionStoppedError",
    "Entries",
    "Rewrite",
    "TokenTable",
    "compact_log",
    "compaction_path",
    "copy_range",
    "create_compaction_file",
    "finish_compaction",
    "token_table",
    "write_compacted",
]

_WRITE_CHUNK = 1 << 20

Entries = Mapping[str, tuple[bytes, int, int, int]]
"""Every live key's ``(value, create_revision, mod_revision, version)``, as :meth:`Store.entries` returns them."""

ExpiryTables = tuple[dict[str, int], dict[str, int], list[tuple[int, int, int, str]]]
"""Keys' own deadlines, keys' leases, and the leases' ``(id, ttl, deadline, owner)``: :meth:`Store.expiry_state`."""
TokenTable = list[tuple[str, bytes, int]]
"""The live tokens' ``(id, record, created)``, by creation: :func:`token_table` of the store."""
_COPY_CHUNK = 4 << 20
# The new file is synced each time this much was written to it. A sync of the log commits the filesystem's
# journal, and on ext4 (data=ordered) that first writes out other files' newly allocated data: a compaction's
# 100 MB, written unsynced, held the log's syncs for 25 to 35 ms on this machine's disk, every compaction.
SYNC_EVERY_BYTES = 8 << 20


def token_table(store: Store, now: int) -> TokenTable:
    """The tokens a compaction keeps: live ones (revoked and expired ones are dropped), as their records."""
    from tuco.core.tokens import encode_record

    return [(record.id, encode_record(record), record.created) for record in store.tokens.live(now)]


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What compacting a log did."""

    events_before: int
    events_after: int
    bytes_before: int
    bytes_after: int
    last_sequence: int
    dropped_bytes: int = 0


class CompactionStoppedError(Exception):
    """The log is closing: the compaction gives up and leaves the old file as it was."""


def compact_log(path: Path) -> CompactionReport:
    """Rewrite the log as one entry per live key, replacing it atomically; return what changed.

    Memory is bounded by the live state. Raises a 'locked' :class:`LogFailedError`
    if a running tuco holds the log, :class:`LogCorruptError` if it is corrupt
    (repair it first); a torn tail is left out, as the server would cut it.
    """
    tmp = compaction_path(path)
    try:
        with hold_directory(path), open_regular_file(path) as held:
            lock_exclusively(held.fileno(), path)
            refused = read_refused(path)
            if refused is not None:
                raise LogFailedError(
                    f"{refused.describe()} (from offset {refused.offset}) were refused to their writers but are "
                    f"still in the log; refusing to compact. Cut them with 'tuco log repair {path}'"
                )
            reader = LogReader(path)
            store = Store(history_bytes=0)  # the very replay a start would do: the same entries
            for batch in reader:
                store.apply_batch(batch)
            report = reader.report
            if report is None:  # pragma: no cover - set by iteration
                raise RuntimeError("scan did not finish")
            if report.corrupt:
                raise LogCorruptError(f"{report.problem}; refusing to compact. Cut it with 'tuco log repair {path}'")
            new_file = create_compaction_file(tmp, OsLogFile)
            try:
                tokens = token_table(store, int(time.time() * 1000))
                written, first_sequence = write_compacted(
                    new_file, report.last_sequence, store.entries(), None, store.expiry_state(), tokens
                )
                os.replace(tmp, path)
                sync_directory(path.parent)
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
        events_after=len(store) + len(store.leases) + len(tokens) + report.last_sequence - first_sequence + 1,
        bytes_before=report.file_bytes,
        bytes_after=written,
        last_sequence=report.last_sequence,
        dropped_bytes=report.dropped_bytes,
    )


def compaction_path(path: Path) -> Path:
    return path.with_name(path.name + ".compact")


def create_compaction_file(tmp: Path, opener: Callable[[Path], LogFile]) -> LogFile:
    """Create ``tmp`` afresh (removing a stale one, whatever it is) and open it, locked, for appending."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    return opener(tmp)


def write_compacted(
    file: LogFile,
    last_sequence: int,
    entries: Entries,
    stop: threading.Event | None,
    expiry: ExpiryTables | None = None,
    tokens: TokenTable | None = None,
) -> tuple[int, int]:
    """Write a version 2 header and one entry per live key, by mod revision, and sync; return (bytes, first sequence).

    The header's first sequence is ``last_sequence + 1``, where the records
    after the snapshot continue. If ``last_sequence`` was no live key's write
    (it deleted one), a DELETE of a key absent from ``entries`` carries it, a
    no-op, and the first sequence is ``last_sequence``: either way replay ends
    at ``last_sequence``, so no revision is ever handed out again.

    ``expiry`` (the store's own deadlines, key leases and leases) keeps each
    key's deadline or lease in its entry, and each lease as a lease entry at
    its grant's sequence, in the same increasing order; ``tokens`` each live
    token as a token entry at its creation's sequence.
    """
    deadlines, key_leases, leases = expiry if expiry is not None else ({}, {}, [])
    ordered = sorted(entries.items(), key=lambda item: item[1][2])
    extras = sorted(
        [(lease[0], encode_lease_entry(*lease)) for lease in leases]
        + [(created, encode_token_entry(id, record, created)) for id, record, created in tokens or ()]
    )
    last_written = max(ordered[-1][1][2] if ordered else 0, extras[-1][0] if extras else 0)
    if last_written > last_sequence:
        raise ValueError(f"an entry has mod revision {last_written}, after the snapshot's revision {last_sequence}")
    marker = last_written < last_sequence
    first_sequence = last_sequence if marker else last_sequence + 1
    chunk = [encode_header(first_sequence=first_sequence, version=FORMAT_VERSION)]
    pending = HEADER_SIZE
    written = 0
    synced = 0  # what ``written`` was at the last sync
    next_lease = 0
    previous = 0
    for key, (value, create_revision, mod_revision, version) in ordered:
        shared = mod_revision == previous  # one transaction's keys: a kind that may repeat the revision
        previous = mod_revision
        while next_lease < len(extras) and extras[next_lease][0] < mod_revision:  # a key's lease comes before it
            lease_record = extras[next_lease][1]
            chunk.append(lease_record)
            pending += len(lease_record)
            next_lease += 1
        if deadlines or key_leases:
            record = encode_entry(
                key,
                value,
                create_revision,
                mod_revision,
                version,
                deadlines.get(key, 0),
                key_leases.get(key, 0),
                shared=shared,
            )
        else:
            record = encode_entry(key, value, create_revision, mod_revision, version, shared=shared)
        chunk.append(record)
        pending += len(record)
        if pending >= _WRITE_CHUNK:
            if stop is not None and stop.is_set():
                raise CompactionStoppedError
            file.write(b"".join(chunk))
            written += pending
            chunk.clear()
            pending = 0
            if written - synced >= SYNC_EVERY_BYTES:
                file.sync()
                synced = written
    leases_left = b"".join(extra for _, extra in extras[next_lease:])
    chunk.append(leases_left)
    pending += len(leases_left)
    if marker:
        record = encode_record(last_sequence, EventType.DELETE, _absent_key(entries))
        chunk.append(record)
        pending += len(record)
    file.write(b"".join(chunk))
    file.sync()
    return written + pending, first_sequence


def _absent_key(entries: Entries) -> str:
    """The shortest of ``""``, ``"\\0"``, ``"\\0\\0"``... that is not a live key: deleting it changes nothing."""
    key = ""
    while key in entries:
        key += "\0"
    return key


def copy_range(source: int, target: LogFile, start: int, end: int, stop: threading.Event | None) -> None:
    """Append bytes ``[start, end)`` of the file open as ``source`` to ``target``, syncing it as it goes."""
    pos = start
    synced = start
    while pos < end:
        if stop is not None and stop.is_set():
            raise CompactionStoppedError
        data = os.pread(source, min(_COPY_CHUNK, end - pos), pos)
        if not data:
            raise OSError(f"the log ended at offset {pos}, before {end}")
        target.write(data)
        pos += len(data)
        if pos - synced >= SYNC_EVERY_BYTES:
            target.sync()
            synced = pos


@dataclass(slots=True)
class Rewrite:
    """One online compaction in progress, shared with its worker threads."""

    tmp: Path
    stop: threading.Event = field(default_factory=threading.Event)
    source: int | None = None  # the old file, read-only: its tail is copied over
    offset: int = 0  # where the old file's records after the snapshot start
    first_sequence: int = 1
    new_file: LogFile | None = None
    written: int = 0  # bytes of the rewritten state in the new file
    entries: int = 0  # live keys written as entries
    replaced: bool = False
    replaced_file: LogFile | None = None  # the log's file before, once the new one is adopted: to release


def finish_compaction(rewrite: Rewrite, start: int, end: int, path: Path) -> None:
    """Copy the last of the tail, make the new file durable and rename it over the log."""
    if rewrite.source is None or rewrite.new_file is None:  # pragma: no cover - set before
        raise RuntimeError("compaction not started")
    copy_range(rewrite.source, rewrite.new_file, start, end, None)
    rewrite.new_file.sync()
    os.replace(rewrite.tmp, path)
    rewrite.replaced = True
