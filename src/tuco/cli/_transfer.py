"""tuco export and tuco import: keys under a prefix as JSON lines, and loading them back, resumably.

An export is one consistent listing (every page at the revision of the first):
one line per key with its base64 value, its revisions and the time it had
left to live. An import loads the lines in transactions of up to 100 keys
(``POST /v1/txn``, far inside its caps): one reads the batch's keys at one
revision, a second writes those to write, each compared with what the first
saw, all at one revision. Every write is conditional, so running it again after
an interruption gives the result of one clean run:

* ``create-only`` writes only keys that do not exist: an existing key is never touched;
* ``overwrite`` writes only keys whose value differs (compared with their
  revision as read), so a rerun skips what the first run wrote;
* ``if-unchanged`` writes only keys still at the exported revision: for putting
  back a subtree in the server it came from. A key that moved on is a conflict,
  unless it already holds the imported value.

A batch whose keys another client changed between the read and the write, or
that a server with lower transaction caps refuses (413), goes key by key with
conditional PUTs (``If-None-Match: *``, ``If-Match``), with the same outcome.

Copying or renaming a subtree is an export piped to an import with
``--prefix-rewrite OLD=NEW``. A key's lease is not carried (a lease belongs to
the server that granted it): the key comes back with the time it had left.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

import click

from tuco.cli._common import EXIT_PRECONDITION_FAILED, Progress, client_command, usage
from tuco.client import Client, Item
from tuco.errors import (
    NoSuchKeyError,
    PreconditionFailedError,
    TxnBytesLimitError,
    TxnOpsLimitError,
    ValueTooLargeError,
)

__all__ = ["export", "import_keys"]

_MODES = ("create-only", "overwrite", "if-unchanged")
_BATCH_KEYS = 100
_BATCH_BYTES = 256 * 1024  # values per batch: its JSON stays well inside the default 1 MiB request body


@click.command()
@click.option("--prefix", default="", help="Export only the keys starting with PREFIX (default: every key).")
@click.option("--page-size", default=500, show_default=True, type=click.IntRange(1, 1000), help="Keys per request.")
@client_command
def export(client: Client, output: str, prefix: str, page_size: int) -> None:
    """Write the keys under --prefix as JSON lines on standard output, all at one revision.

    Each line: {"key", "value" (base64), "ttl_ms" (time left to live, null for none),
    "revision" (its mod_revision), "create_revision", "version"}. Keys past their
    deadline are left out.
    """
    out = sys.stdout
    count = 0
    progress = Progress("exported", scale=1, unit="keys")
    for page in client.pages(prefix, page_size=page_size):
        now = int(time.time() * 1000)
        for item in page.items:
            ttl = None if item.expires_at is None else item.expires_at - now
            if ttl is not None and ttl <= 0:
                continue
            line = {
                "key": item.key,
                "value": base64.b64encode(item.value or b"").decode("ascii"),
                "ttl_ms": ttl,
                "revision": item.mod_revision,
                "create_revision": item.create_revision,
                "version": item.version,
            }
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
        progress(count)
    out.flush()
    progress.done()
    click.echo(f"exported {count} key{'' if count == 1 else 's'}", err=True)


class _Line:
    """One export line, checked."""

    __slots__ = ("key", "revision", "ttl_ms", "value")

    def __init__(self, raw: str, number: int) -> None:
        try:
            fields: Any = json.loads(raw)
            if not isinstance(fields, dict):
                raise ValueError("not a JSON object")
            key, value, ttl, revision = fields["key"], fields["value"], fields.get("ttl_ms"), fields.get("revision")
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise ValueError("key must be a non-empty string and value a base64 string")
            if ttl is not None and (type(ttl) is not int or ttl < 1):
                raise ValueError("ttl_ms must be a positive integer or null")
            if revision is not None and (type(revision) is not int or revision < 1):
                raise ValueError("revision must be a positive integer")
            self.value = base64.b64decode(value, validate=True)
        except (ValueError, KeyError, binascii.Error) as exc:
            raise _NotAnExportLine(
                f"line {number} is not an export line ({exc}); lines before it were imported, rerun to resume"
            ) from None
        self.key: str = key
        self.ttl_ms: int | None = ttl
        self.revision: int | None = revision


class _NotAnExportLine(ValueError):
    """A line that is not one of `tuco export`'s (the message says which and why)."""


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, 1):
        if raw.strip():
            yield number, raw


@click.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--prefix-rewrite", metavar="OLD=NEW", help="Import each key under OLD as the same key under NEW.")
@click.option(
    "--mode",
    type=click.Choice(_MODES),
    default="create-only",
    show_default=True,
    help="create-only: never overwrite; overwrite: write what differs; if-unchanged: only keys still at the "
    "exported revision.",
)
@client_command
def import_keys(client: Client, output: str, file: IO[str], prefix_rewrite: str | None, mode: str) -> None:
    """Load the JSON lines of `tuco export` from FILE ('-': standard input); rerun it to resume.

    Every write is conditional, so an interrupted import run again ends as one clean
    run would. Prints what it did on stderr; exits 4 if --mode if-unchanged met keys
    that changed since the export (they are left as they are).
    """
    old, new = _rewrite(prefix_rewrite)
    counts = {"written": 0, "unchanged": 0, "existing": 0, "conflicts": 0}
    progress = Progress("imported", scale=1, unit="lines")
    batch: dict[str, _Line] = {}
    size = 0
    for number, raw in _lines(file):
        try:
            line = _Line(raw, number)
        except _NotAnExportLine as exc:
            _import_batch(client, batch, mode, counts)  # the lines before it, as the message says
            usage(str(exc))
        key = line.key
        if old is not None and new is not None:
            if not key.startswith(old):
                _import_batch(client, batch, mode, counts)
                usage(
                    f"line {number}: key {key!r} is not under {old!r} (--prefix-rewrite); lines before it were imported"
                )
            key = new + key[len(old) :]
        if key in batch or len(batch) >= _BATCH_KEYS or size >= _BATCH_BYTES:  # a transaction writes a key once
            _import_batch(client, batch, mode, counts)
            batch, size = {}, 0
        batch[key] = line
        size += len(line.value)
        progress(number)
    _import_batch(client, batch, mode, counts)
    progress.done()
    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    click.echo(f"imported: {summary}", err=True)
    if counts["conflicts"]:
        sys.exit(EXIT_PRECONDITION_FAILED)


def _rewrite(text: str | None) -> tuple[str | None, str | None]:
    if text is None:
        return None, None
    old, sep, new = text.partition("=")
    if not sep:
        usage(f"--prefix-rewrite takes OLD=NEW, not {text!r}")
    if not new and not old:
        usage("--prefix-rewrite needs OLD or NEW")
    return old, new


def _import_batch(client: Client, batch: dict[str, _Line], mode: str, counts: dict[str, int]) -> None:
    """Import ``batch`` in two transactions (read, then conditional writes), or key by key if that cannot be."""
    if not batch:
        return
    try:
        reading = client.txn()
        for key in batch:
            reading.then.get(key)
        found: tuple[Item | None, ...] = reading.commit().results
        writing = client.txn()
        outcomes: dict[str, str] = {}
        for (key, line), current in zip(batch.items(), found, strict=True):
            outcomes[key] = _decide(current, line, mode)
            if outcomes[key] == "written":
                if current is None:
                    writing.when(key, "exists", "==", False)
                else:
                    writing.when(key, "mod_revision", "==", current.mod_revision)
                writing.then.put(key, line.value, ttl=_ttl(line))
        written = not writing.then.ops or writing.commit().succeeded
    except (TxnOpsLimitError, TxnBytesLimitError, ValueTooLargeError):  # a server with lower caps: key by key
        written = False
        outcomes = {}
    for key, line in batch.items():
        if written or outcomes.get(key, "written") != "written":
            counts[outcomes[key]] += 1
        else:  # changed between the read and the write, or refused whole
            counts[_import_one(client, key, line, mode)] += 1


def _ttl(line: _Line) -> float | None:
    return line.ttl_ms / 1000 if line.ttl_ms is not None else None


def _decide(current: Item | None, line: _Line, mode: str) -> str:
    """What importing ``line`` over ``current`` (None: absent) comes to: written, unchanged, existing or conflicts."""
    if mode == "create-only":
        return "existing" if current is not None else "written"
    if current is not None and current.value == line.value and (line.ttl_ms is None) == (current.expires_at is None):
        return "unchanged"
    if mode == "if-unchanged" and (current is None or current.mod_revision != line.revision):
        return "conflicts"
    return "written"


def _import_one(client: Client, key: str, line: _Line, mode: str) -> str:
    """Write one key as ``mode`` says; what happened: written, unchanged, existing or conflicts."""
    ttl = line.ttl_ms / 1000 if line.ttl_ms is not None else None
    if mode == "create-only":
        try:
            client.put(key, line.value, if_absent=True, ttl=ttl)
        except PreconditionFailedError:
            return "existing"
        return "written"
    try:
        current = client.get(key)
    except NoSuchKeyError:
        current = None
    if current is not None and current.value == line.value and (ttl is None) == (current.expires_at is None):
        return "unchanged"
    if mode == "if-unchanged" and (current is None or current.mod_revision != line.revision):
        return "conflicts"
    try:
        if current is None:
            client.put(key, line.value, if_absent=True, ttl=ttl)
        else:
            client.put(key, line.value, if_revision=current.mod_revision, ttl=ttl)
    except PreconditionFailedError:
        return "conflicts"  # changed between our read and our write: someone else is writing it
    return "written"
