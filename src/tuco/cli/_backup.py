"""tuco snapshot save|inspect|verify|restore: backups of a whole server, taken online and restored offline.

``save`` streams ``GET /v1/snapshot`` to ``FILE.part``, verifying as it goes,
and renames it to FILE only once the trailer checked out: a FILE that exists
is a whole snapshot. ``restore`` writes a new file log or fills an empty
PostgreSQL schema, all or nothing (:mod:`tuco.log._restore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click

from tuco.cli._common import EXIT_NOT_FOUND, Progress, client_command, echo_json, usage
from tuco.client import Client
from tuco.core.snapshot import SnapshotSummary  # the core: `tuco snapshot` needs tuco[server] (cli/__init__)
from tuco.errors import LogError, SnapshotFormatError

__all__ = ["Progress", "snapshot"]


@contextlib.contextmanager
def _refused(path: Path) -> Iterator[None]:
    """A snapshot that fails its checks, or a target that cannot take it: one line on stderr, exit 1."""
    try:
        yield
    except (SnapshotFormatError, LogError) as exc:
        click.echo(f"tuco: {path}: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)


def _described(summary: SnapshotSummary) -> dict[str, object]:
    taken = datetime.fromtimestamp(summary.taken_at / 1000, tz=UTC).isoformat(timespec="seconds")
    return {
        "format_version": summary.version,
        "revision": summary.revision,
        "taken_at": taken.replace("+00:00", "Z"),
        "keys": summary.keys,
        "leases": summary.leases,
        "tokens": summary.tokens,
        "bytes": summary.bytes,
        "sha256": summary.sha256,
    }


def _report(summary: SnapshotSummary, output: str, first: str) -> None:
    if output == "json":
        echo_json(_described(summary))
        return
    click.echo(first)
    for name, value in _described(summary).items():
        click.echo(f"{name}\t{value}")


_OUTPUT = click.option(
    "--output",
    "-o",
    type=click.Choice(["raw", "json"]),
    default="raw",
    show_default=True,
    help="raw: lines for people; json: one JSON document.",
)


@click.group()
def snapshot() -> None:
    """Take a consistent snapshot of a running server, check one, restore one into a new log."""


@snapshot.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@client_command
def save(client: Client, output: str, file: Path) -> None:
    """Save the server's whole state at one revision to FILE (admin token), verified as it arrives.

    Written to FILE.part and renamed once whole: FILE is never a partial snapshot.
    The server keeps serving meanwhile. Exit 1 if the snapshot arrived damaged or cut short.
    """
    from tuco.core.snapshot import SnapshotDecoder

    part = file.with_name(file.name + ".part")
    decoder = SnapshotDecoder()
    progress = Progress(f"saving {file}")
    try:
        with part.open("wb") as out:
            for chunk in client.snapshot():
                decoder.feed(chunk)
                out.write(chunk)
                progress(decoder.offset)
            summary = decoder.finish()
            out.flush()
            os.fsync(out.fileno())
        os.replace(part, file)
    except SnapshotFormatError as exc:
        progress.done()
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        click.echo(f"tuco: the snapshot from {client.options.url} is not whole ({exc}); nothing saved", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        usage(f"cannot write {file}: {exc.strerror or exc}")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    progress.done()
    _report(summary, output, f"saved {file}")


_file_argument = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@snapshot.command()
@_file_argument
@_OUTPUT
def verify(file: Path, output: str) -> None:
    """Check FILE whole: format version, every record's checksum, the counts and the SHA-256 (exit 1 if not)."""
    from tuco.log._restore import verify_snapshot

    progress = Progress(f"verifying {file}", file.stat().st_size)
    with _refused(file):
        summary = verify_snapshot(file, progress)
    progress.done()
    _report(summary, output, f"ok {file}")


@snapshot.command()
@_file_argument
@_OUTPUT
def inspect(file: Path, output: str) -> None:
    """Show what FILE holds (revision, when taken, keys, leases, tokens, digest), checking it whole."""
    from tuco.log._restore import verify_snapshot

    with _refused(file):
        summary = verify_snapshot(file)
    _report(summary, output, f"snapshot {file}")


@snapshot.command()
@_file_argument
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a new file log here (the directory must hold no tuco.log).",
)
@click.option(
    "--database-url",
    envvar="TUCO_RESTORE_DATABASE_URL",
    metavar="URL",
    help="Load into this PostgreSQL database's tuco schema, which must hold no state [env: TUCO_RESTORE_DATABASE_URL].",
)
@_OUTPUT
def restore(file: Path, data_dir: Path | None, database_url: str | None, output: str) -> None:
    """Restore FILE into a new file log (--data-dir) or an empty PostgreSQL schema (--database-url).

    All or nothing: the snapshot is verified, and an interrupted restore leaves no log a server
    would start on (file: a temporary file, renamed last; PostgreSQL: one transaction). A server
    started on the result is at the snapshot's revision, with every key's revisions. Stop the
    target's server first.
    """
    from tuco.log._restore import restore_file, restore_postgres

    if (data_dir is None) == (database_url is None):
        usage("give one target: --data-dir DIR (a file log) or --database-url URL (PostgreSQL)")
    with _refused(file):
        if data_dir is not None:
            summary = restore_file(file, data_dir)
            target = str(data_dir)
        else:
            progress = Progress(f"restoring {file}", file.stat().st_size)
            summary = asyncio.run(restore_postgres(file, str(database_url), progress))
            progress.done()
            target = "the database"
    _report(summary, output, f"restored {file} into {target}")
