"""tuco log dump|verify|repair|compact: the file transaction log, offline."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import click

from tuco.cli._common import EXIT_NOT_FOUND, b64, echo_json
from tuco.core.events import Event, EventType  # loaded by `import tuco` already: no cost to the CLI's start
from tuco.core.origin import origin_fields
from tuco.errors import LogError

__all__ = ["log"]


@click.group()
def log() -> None:
    """Inspect, check and repair a file transaction log (run these while the server is stopped)."""


_path_argument = click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@contextlib.contextmanager
def _exit_on_log_error(path: Path) -> Iterator[None]:
    """A log that cannot be used (not a log, locked, corrupt) is one line on stderr and exit 1."""
    try:
        yield
    except LogError as exc:
        click.echo(f"tuco: {path}: {exc}", err=True)
        sys.exit(EXIT_NOT_FOUND)


@log.command()
@_path_argument
@click.option(
    "--output",
    "-o",
    type=click.Choice(["raw", "json"]),
    default="raw",
    show_default=True,
    help="raw: tab-separated lines; json: one JSON object per event (values base64).",
)
def dump(path: Path, output: str) -> None:
    """Print every event: sequence, type, key and value (escaped so any byte is visible), a PUT's revisions.

    A change recorded with its origin also shows ``by``, ``at`` (Unix ms) and, for a delete, ``reason``.

    The sequence is the mod revision; a PUT also shows its key's create revision
    and version, as a compacted entry records them or as replay derives them.
    """
    from tuco.log.file import LogReader

    reader = LogReader(path)
    revisions: dict[str, tuple[int, int]] = {}  # key -> (create revision, version): bounded by the live keys
    with _exit_on_log_error(path):
        for batch in reader:
            for event in _writes(batch):  # a transaction's writes, each on a line, at its one revision
                sequence, type, key, value, create_revision, version, _, _ = event
                deadline, lease, ttl = event.deadline, event.lease, event.ttl
                line = f"{sequence}\t{type.name}\t{key!r}\t{value!r}"
                if type is EventType.PUT:
                    if not create_revision:
                        old = revisions.get(key)
                        create_revision, version = (old[0], old[1] + 1) if old else (sequence, 1)
                    revisions[key] = (create_revision, version)
                    line += f"\tcreate_revision={create_revision}\tversion={version}"
                    if deadline:
                        line += f"\tdeadline={deadline}"
                    if lease:
                        line += f"\tlease={lease}"
                elif type is EventType.DELETE:
                    revisions.pop(key, None)
                else:
                    line = f"{sequence}\t{type.name}\tlease={lease}"
                    if ttl:
                        line += f"\tttl={ttl}"
                    if deadline:
                        line += f"\tdeadline={deadline}"
                for name, field in origin_fields(event.origin, type is EventType.DELETE).items():
                    text = str(field)
                    line += f"\t{name}={text if text.isprintable() else repr(text)}"
                if output == "json":
                    echo_json(_event_json(event, create_revision, version))
                else:
                    click.echo(line)
    if reader.report and reader.report.problem:
        click.echo(f"tuco: stopped at offset {reader.report.valid_bytes}: {reader.report.problem}", err=True)
        sys.exit(EXIT_NOT_FOUND)


@log.command()
@_path_argument
def verify(path: Path) -> None:
    """Check every record; exit 0 if the log is whole, 1 if it has a torn tail, corruption or a refused batch."""
    from tuco.log._disk import read_refused
    from tuco.log.file import LogReader

    reader = LogReader(path)
    with _exit_on_log_error(path):
        for _ in reader:
            pass
        refused = read_refused(path)
    report = reader.report
    if report is None:  # pragma: no cover - set by iteration
        raise RuntimeError("scan did not finish")
    click.echo(f"{path}: {report.events} events, last sequence {report.last_sequence}, {report.file_bytes} bytes")
    if refused is not None:
        click.echo(
            f"refused: {refused.describe()} from offset {refused.offset} were refused to their writers but are "
            f"still in the file; 'tuco log repair {path}' cuts them"
        )
    if report.problem:
        kind = "corrupt" if report.corrupt else "torn tail"
        click.echo(f"{kind}: {report.problem}; {report.dropped_bytes} bytes after offset {report.valid_bytes}")
    if refused is not None or report.problem:
        sys.exit(EXIT_NOT_FOUND)
    click.echo("ok")


@log.command()
@_path_argument
def repair(path: Path) -> None:
    """Cut the log after its last valid record, or before a refused batch (what follows is lost; back it up first)."""
    from tuco.log.file import repair_log

    with _exit_on_log_error(path):
        report = repair_log(path)
    if report.dropped_bytes:
        click.echo(
            f"{path}: kept {report.events} events (last sequence {report.last_sequence}); "
            f"dropped {report.dropped_bytes} bytes from offset {report.valid_bytes} ({report.problem})"
        )
    else:
        click.echo(f"{path}: {report.events} events, nothing to repair")


@log.command()
@_path_argument
def compact(path: Path) -> None:
    """Rewrite the log as one entry per live key, with its revisions, dropping overwritten and deleted values."""
    from tuco.log.file import compact_log

    with _exit_on_log_error(path):
        report = compact_log(path)
    if report.dropped_bytes:
        click.echo(f"{path}: left out a torn tail of {report.dropped_bytes} bytes")
    click.echo(
        f"{path}: {report.events_before} events, {report.bytes_before} bytes -> "
        f"{report.events_after} events, {report.bytes_after} bytes (last sequence {report.last_sequence})"
    )


def _writes(batch: Iterable[Event]) -> Iterator[Event]:
    """The events with each transaction's replaced by its writes (they share its sequence)."""
    from tuco.core.txn import decode_writes

    for event in batch:
        if event.type is EventType.TXN:
            origin = event.origin
            for write in decode_writes(event.sequence, event.value):
                yield write if origin is None else write._replace(origin=origin)
        else:
            yield event


def _event_json(event: Event, create_revision: int, version: int) -> dict[str, object]:
    """One event of the log as JSON: every field it has, the value in base64."""

    shown: dict[str, object] = {"sequence": event.sequence, "type": event.type.name}
    if event.type in (EventType.PUT, EventType.DELETE):
        shown["key"] = event.key
    if event.type is EventType.PUT:
        shown.update(value=b64(event.value), create_revision=create_revision, version=version)
    for name in ("deadline", "lease", "ttl"):
        value = getattr(event, name)
        if value:
            shown[name] = value
    shown.update(origin_fields(event.origin, event.type is EventType.DELETE))
    return shown
