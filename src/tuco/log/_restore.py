"""Restoring a snapshot: into a new file log, or into an empty PostgreSQL tuco schema, all or nothing.

A file restore reads and verifies the whole snapshot first (the state is held
in memory, as the server that starts on it will hold it), writes it as a
compacted log (:func:`~tuco.log._compaction.write_compacted`: its entries keep
every key's revisions) to a temporary file in the data directory, makes it
durable and only then renames it to ``tuco.log``. Interrupted at any point,
the directory has no ``tuco.log``: nothing a server would start on as if it
were the restored state (the next restore removes the leftover).

A PostgreSQL restore is one transaction: it creates the schema if need be,
refuses a schema that holds any state, loads the rows with COPY as the
snapshot streams and sets the head to the snapshot's revision. The digest is
checked at the end, before the commit: a damaged or interrupted restore rolls
back and leaves the database as it was.

Either way the store a server replays from it is at the snapshot's revision,
each key with its create and mod revisions and version, its deadline or
lease; leases and tokens (their records, never a secret) come back too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from tuco.core.snapshot import KeyRecord, LeaseRecord, SnapshotDecoder, SnapshotSummary, TokenEntry
from tuco.errors import LogFailedError, LogFormatError, SnapshotFormatError
from tuco.log._compaction import create_compaction_file, write_compacted
from tuco.log._disk import OsLogFile, hold_directory, sync_directory

if TYPE_CHECKING:
    import asyncpg

__all__ = ["LOADING_NAME", "read_snapshot", "restore_file", "restore_postgres", "verify_snapshot"]

LOADING_NAME = ".tuco.log.restoring"
"""The temporary file a file restore writes before renaming it to the log."""
_READ = 1 << 20
_COPY_ROWS = 5000


def read_snapshot(file: BinaryIO, progress: Callable[[int], None] | None = None) -> Iterator[object]:
    """The snapshot's records, verified as they are read; the last item is its :class:`SnapshotSummary`.

    Raises :class:`~tuco.errors.SnapshotFormatError` (damaged, truncated, another version).
    """
    decoder = SnapshotDecoder()
    while chunk := file.read(_READ):
        yield from decoder.feed(chunk)
        if progress is not None:
            progress(decoder.offset)
    yield decoder.finish()


def verify_snapshot(path: Path, progress: Callable[[int], None] | None = None) -> SnapshotSummary:
    """Read the whole file and check it (every record's CRC, the counts, the SHA-256); return its summary."""
    with _open(path) as file:
        items = read_snapshot(file, progress)
        summary = None
        for item in items:
            summary = item
    if not isinstance(summary, SnapshotSummary):  # pragma: no cover - finish() returns one or raises
        raise SnapshotFormatError("no summary")
    return summary


@contextlib.contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    try:
        file = path.open("rb")
    except OSError as exc:
        raise SnapshotFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with file:
        yield file


class _Loaded(NamedTuple):
    entries: dict[str, tuple[bytes, int, int, int]]
    deadlines: dict[str, int]
    key_leases: dict[str, int]
    leases: list[tuple[int, int, int, str]]
    tokens: list[tuple[str, bytes, int]]
    summary: SnapshotSummary


def _load(path: Path) -> _Loaded:
    loaded = _Loaded({}, {}, {}, [], [], SnapshotSummary(0, 0, 0, 0, 0, 0, 0, ""))
    summary = None
    with _open(path) as file:
        for item in read_snapshot(file):
            if isinstance(item, KeyRecord):
                if item.key in loaded.entries:
                    raise SnapshotFormatError(f"key {item.key!r} appears twice in the snapshot")
                loaded.entries[item.key] = (item.value, item.create_revision, item.mod_revision, item.version)
                if item.deadline:
                    loaded.deadlines[item.key] = item.deadline
                if item.lease:
                    loaded.key_leases[item.key] = item.lease
            elif isinstance(item, LeaseRecord):
                loaded.leases.append(tuple(item))  # type: ignore[arg-type]
            elif isinstance(item, TokenEntry):
                loaded.tokens.append(tuple(item))  # type: ignore[arg-type]
            elif isinstance(item, SnapshotSummary):
                summary = item
    if summary is None:  # pragma: no cover - read_snapshot ends with one or raises
        raise SnapshotFormatError("no summary")
    loaded.leases.sort()
    loaded.tokens.sort(key=lambda token: token[2])
    return loaded._replace(summary=summary)


def restore_file(snapshot: Path, data_dir: Path, log_name: str = "tuco.log") -> SnapshotSummary:
    """Write the snapshot as a new file log ``data_dir/log_name``; the directory must hold no log yet.

    Raises SnapshotFormatError for a bad snapshot (before anything is written),
    LogFailedError if the directory holds a log, is locked by a server or cannot be written.
    """
    log_path = data_dir / log_name
    loaded = _load(snapshot)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with hold_directory(log_path):
            if log_path.exists():
                raise LogFailedError(
                    f"{log_path} exists: a restore makes a new log; give it an empty --data-dir (or move that log away)"
                )
            tmp = data_dir / LOADING_NAME
            new_file = create_compaction_file(tmp, OsLogFile)
            try:
                write_compacted(
                    new_file,
                    loaded.summary.revision,
                    loaded.entries,
                    None,
                    (loaded.deadlines, loaded.key_leases, loaded.leases),
                    loaded.tokens,
                )
                new_file.sync()
                os.replace(tmp, log_path)
                sync_directory(data_dir)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            finally:
                new_file.close()
    except OSError as exc:
        raise LogFailedError(f"cannot restore into {data_dir}: {exc.strerror or exc}") from exc
    return loaded.summary


async def restore_postgres(snapshot: Path, dsn: str, progress: Callable[[int], None] | None = None) -> SnapshotSummary:
    """Load the snapshot into the database's tuco schema (created if absent), which must hold no state; one transaction.

    Raises SnapshotFormatError for a bad snapshot (nothing is committed), LogFormatError
    if the schema holds state already, LogFailedError if the database cannot be reached.
    """
    import asyncpg

    from tuco.log._pg_schema import ensure_schema

    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise LogFailedError(f"cannot reach the database: {exc}") from exc
    try:
        async with conn.transaction():
            await ensure_schema(conn)  # a savepoint inside this transaction: rolled back with it
            head = await conn.fetchval("SELECT sequence FROM tuco_head WHERE id = 1 FOR UPDATE")
            held = await conn.fetchval(
                "SELECT (SELECT count(*) FROM tuco_state) + (SELECT count(*) FROM tuco_events)"
                " + (SELECT count(*) FROM tuco_leases) + (SELECT count(*) FROM tuco_tokens)"
            )
            if head or held:
                raise LogFormatError(
                    f"the database's tuco schema holds state (revision {head}); a restore needs an empty one "
                    "(a new database, or drop the tuco_* tables first)"
                )
            summary = await _copy_rows(conn, snapshot, progress)
            top = await conn.fetchval(
                "SELECT greatest((SELECT max(sequence) FROM tuco_state), (SELECT max(id) FROM tuco_leases),"
                " (SELECT max(sequence) FROM tuco_tokens))"
            )
            if (top or 0) < summary.revision:
                # The head's own event: a DELETE of the empty key (never a key), so a replica's replay ends at it.
                await conn.execute(
                    "INSERT INTO tuco_events (sequence, type, key, value) VALUES ($1, 2, '', '')", summary.revision
                )
            await conn.execute("UPDATE tuco_head SET sequence = $1 WHERE id = 1", summary.revision)
    except asyncpg.PostgresError as exc:
        raise LogFailedError(f"the restore was rolled back: {exc}") from exc
    finally:
        await conn.close()
    return summary


async def _copy_rows(
    conn: asyncpg.Connection, snapshot: Path, progress: Callable[[int], None] | None
) -> SnapshotSummary:
    """COPY the snapshot's keys, leases and tokens into their tables, in chunks as it is read."""
    states: list[tuple[bytes, bytes, int, int, int, int | None, int | None]] = []
    leases: list[tuple[int, int, int, bytes | None]] = []
    tokens: list[tuple[bytes, bytes, int]] = []
    copy = conn.copy_records_to_table
    state_columns = ["key", "value", "sequence", "create_revision", "version", "deadline", "lease"]
    summary = None
    with _open(snapshot) as file:
        for item in read_snapshot(file, progress):
            if isinstance(item, KeyRecord):
                key, value, create_revision, mod_revision, version, deadline, lease = item
                states.append(
                    (key.encode(), value, mod_revision, create_revision, version, deadline or None, lease or None)
                )
                if len(states) >= _COPY_ROWS:
                    await copy("tuco_state", records=states, columns=state_columns)
                    states.clear()
            elif isinstance(item, LeaseRecord):
                leases.append((item.id, item.ttl, item.deadline, item.owner.encode() if item.owner else None))
            elif isinstance(item, TokenEntry):
                tokens.append((item.id.encode(), item.record, item.created))
            elif isinstance(item, SnapshotSummary):
                summary = item
    if summary is None:  # pragma: no cover - read_snapshot ends with one or raises
        raise SnapshotFormatError("no summary")
    await copy("tuco_state", records=states, columns=state_columns)
    await copy("tuco_leases", records=leases, columns=["id", "ttl", "deadline", "owner"])
    await copy("tuco_tokens", records=tokens, columns=["id", "record", "sequence"])
    return summary
