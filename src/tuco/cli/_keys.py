"""get, put, delete, list and watch: the key commands, on :class:`tuco.client.Client`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from tuco.cli._common import (
    EXIT_HISTORY_COMPACTED,
    EXIT_REVISION_AHEAD,
    _key,
    b64,
    client_command,
    duration_seconds,
    echo_json,
    escape,
    escape_value,
    key_argument,
    usage,
)
from tuco.client import Client, Entry, WatchEvent
from tuco.errors import HistoryCompactedError, RevisionAheadError

__all__ = ["delete", "get", "list_keys", "put", "watch"]


def _revision(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    if not text.strip('"').isdigit() or int(text.strip('"')) < 1:
        usage(f"{what} takes a revision (a positive number), not {text!r}")
    return int(text.strip('"'))


def _conditions(if_match: str | None, create_only: bool = False) -> tuple[int | None, bool, bool]:
    """--if-match REV (or * for "exists") and --create-only as ``(if_revision, if_absent, if_exists)``."""
    if if_match is not None and create_only:
        usage("--if-match and --create-only exclude each other")
    if if_match == "*":
        return None, False, True
    return _revision(if_match, "--if-match"), create_only, False


def _duration_seconds(text: str, what: str) -> float:
    return duration_seconds(text, what)  # the server applies its own cap


def _lease_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        usage(f"a lease id is a positive number, as 'tuco lease grant' prints, not {text!r}")
    return int(text)


def _key_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value:
        usage("--key takes a non-empty key")
    return _key(ctx, param, value)


def _entry_json(entry: Entry) -> dict[str, object]:
    return {
        "key": entry.key,
        "value": b64(entry.value),
        "mod_revision": entry.mod_revision,
        "revision": entry.revision,
        "expires_at": entry.expires_at,
    }


@click.command()
@key_argument()
@click.option("--consistent", is_flag=True, help="Read after every write any replica acknowledged (postgres backend).")
@click.option("--revision", metavar="REV", help="The value KEY had at revision REV (exit 5 once not retained).")
@client_command
def get(client: Client, output: str, key: str, consistent: bool, revision: str | None) -> None:
    """Print the value of KEY exactly as stored (exit 1 if there is none)."""
    entry = client.get(key, consistent=consistent, revision=_revision(revision, "--revision"))
    if output == "json":
        echo_json(_entry_json(entry))
        return
    sys.stdout.buffer.write(entry.value)
    sys.stdout.buffer.flush()


def _value(value: str | None, file: Path | None) -> bytes:
    """The bytes to store: VALUE as the shell passed it (any bytes), --file, or standard input."""
    if value is not None and file is not None:
        usage("give the value once: as VALUE, --file or -")
    if file is not None:
        try:
            return file.read_bytes()
        except OSError as exc:
            usage(f"cannot read {file}: {exc.strerror}")
    if value is not None and value != "-":
        return os.fsencode(value)  # the argument's own bytes, UTF-8 or not
    if value is None and sys.stdin.isatty():
        usage("no value given: pass it as VALUE, with --file PATH, or on standard input (tuco put KEY - < file)")
    return sys.stdin.buffer.read()


@click.command()
@key_argument()
@click.argument("value", required=False)
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), help="Read the value from FILE.")
@click.option("--if-match", "if_match", metavar="REV", help="Write only if KEY is at revision REV (* : if it exists).")
@click.option("--create-only", is_flag=True, help="Write only if KEY does not exist.")
@click.option("--ttl", metavar="DURATION", help="Delete KEY this long after the write (30s, 500ms, 5m, 1h, 2d).")
@click.option("--lease", metavar="ID", help="Attach KEY to lease ID: it is deleted when the lease ends.")
@client_command
def put(
    client: Client,
    output: str,
    key: str,
    value: str | None,
    file: Path | None,
    if_match: str | None,
    create_only: bool,
    ttl: str | None,
    lease: str | None,
) -> None:
    """Store VALUE under KEY and print its new revision; VALUE '-' (or none, when piped) reads standard input.

    With --if-match or --create-only, a condition that does not hold exits 4;
    --lease with a lease that does not exist (or expired) exits 1.
    """
    if_revision, if_absent, if_exists = _conditions(if_match, create_only)
    if ttl is not None and lease is not None:
        usage("--ttl and --lease exclude each other: a key expires at one deadline")
    seconds = _duration_seconds(ttl, "--ttl") if ttl is not None else None
    lease_id = _lease_id(lease) if lease is not None else None
    body = _value(value, file)
    written = client.put(
        key, body, if_revision=if_revision, if_absent=if_absent, if_exists=if_exists, ttl=seconds, lease=lease_id
    )
    if output == "json":
        echo_json({"key": key, "revision": written.revision, "expires_at": written.expires_at})
    else:
        click.echo(str(written.revision))


@click.command()
@key_argument(required=False)
@click.option("--if-match", "if_match", metavar="REV", help="Delete only if KEY is at revision REV (* : if it exists).")
@click.option("--prefix", metavar="PREFIX", help="Delete every key under PREFIX at one revision (not with KEY).")
@click.option("--all", "everything", is_flag=True, help="With --prefix '': delete every key.")
@client_command
def delete(
    client: Client, output: str, key: str | None, if_match: str | None, prefix: str | None, everything: bool
) -> None:
    """Delete KEY (succeeds also when it does not exist, unless --if-match says otherwise: exit 4).

    With --prefix, every key under PREFIX, at one revision; prints how many.
    """
    if prefix is not None:
        if key is not None or if_match is not None:
            usage("--prefix deletes a range: give no KEY and no --if-match")
        if not prefix and not everything:
            usage("deleting every key takes --prefix '' --all")
        deleted = client.delete_prefix(prefix)
        if output == "json":
            echo_json({"prefix": prefix, "deleted": deleted.deleted, "revision": deleted.revision})
        else:
            click.echo(str(deleted.deleted))
        return
    if key is None:
        usage("give the KEY to delete (or --prefix PREFIX)")
    if_revision, _, if_exists = _conditions(if_match)
    written = client.delete(key, if_revision=if_revision, if_exists=if_exists)
    if output == "json":
        echo_json({"key": key, "revision": written.revision})


@click.command(name="list")
@click.argument("prefix", default="")
@click.option("--keys-only", is_flag=True, help="Print only the keys.")
@click.option("--json", "as_json", is_flag=True, help="The same as --output json.")
@client_command
def list_keys(client: Client, output: str, prefix: str, keys_only: bool, as_json: bool) -> None:
    """Print the keys under PREFIX (all keys without one) in byte order, at one revision.

    Lines are KEY, a tab and the value (UTF-8, with backslash escapes for other
    bytes, tabs and newlines); --output json prints the API's items (values base64).
    """
    items: list[dict[str, object]] = []
    revision = 0
    for page in client.pages(prefix, page_size=1000, keys_only=keys_only):
        revision = page.revision
        for item in page.items:
            if output == "json" or as_json:
                shown: dict[str, object] = {"key": item.key}
                if not keys_only:
                    shown["value"] = b64(item.value)
                shown.update(create_revision=item.create_revision, mod_revision=item.mod_revision)
                shown["version"] = item.version
                if item.expires_at is not None:
                    shown["expires_at"] = item.expires_at
                items.append(shown)
            elif keys_only:
                click.echo(escape(item.key))
            else:
                click.echo(f"{escape(item.key)}\t{escape_value(item.value or b'')}")
    if output == "json" or as_json:
        echo_json({"revision": revision, "items": items})


def _event_json(event: WatchEvent) -> dict[str, object]:
    if event.type == "delete":
        return {"revision": event.revision, "key": event.key, "type": "delete"}
    shown: dict[str, object] = {"revision": event.revision, "key": event.key, "value": b64(event.value)}
    shown["mod_revision"] = event.revision
    if event.create_revision is not None:
        shown.update(create_revision=event.create_revision, version=event.version)
    shown["type"] = "put"
    return shown


@click.command()
@click.argument("prefix", default="")
@click.option("--from", "start", metavar="REV", help="Start with the changes at revision REV (default: from now).")
@click.option("--key", "key", metavar="KEY", callback=_key_option, help="Watch this one key instead of a prefix.")
@click.option("--json", "as_json", is_flag=True, help="The same as --output json: each event as one JSON object.")
@client_command
def watch(client: Client, output: str, prefix: str, start: str | None, key: str | None, as_json: bool) -> None:
    """Print every change under PREFIX (or to --key KEY) as it happens, one line each, until interrupted.

    Lines are REVISION, a tab, put or delete, a tab, KEY (and for a put a tab
    and the value, escaped as by list). When the server ends the stream (a slow
    reader, a shutdown) or the connection drops, it reconnects and resumes after
    the last revision it saw, so nothing is missed or printed twice. Exits 0 on
    Ctrl-C, 5 if the changes asked for are no longer retained (410), 8 if the
    server's store is behind where the watch resumes (409 revision_ahead: it was
    restored from an older state; re-read what you need and watch again).
    """
    first = _revision(start, "--from")
    last = first - 1 if first is not None else None
    if key is not None and prefix:
        usage("watch a PREFIX or a --key, not both")
    try:
        for event in client.watch(
            None if key is not None else prefix, key=key, start_revision=first, reconnect_for=float("inf")
        ):
            if output == "json" or as_json:
                echo_json(_event_json(event))
            elif event.type == "put":
                click.echo(f"{event.revision}\tput\t{escape(event.key)}\t{escape_value(event.value or b'')}")
            else:
                click.echo(f"{event.revision}\tdelete\t{escape(event.key)}")
            sys.stdout.flush()
            last = event.revision
    except KeyboardInterrupt:
        sys.exit(0)
    except HistoryCompactedError as exc:
        click.echo(
            f"tuco: 410 history_compacted: the changes after revision {last} are no longer retained; "
            f"the oldest available is {exc.oldest} (start again with --from)",
            err=True,
        )
        sys.exit(EXIT_HISTORY_COMPACTED)
    except RevisionAheadError as exc:
        click.echo(
            f"tuco: 409 revision_ahead: the server's store is at revision {exc.revision}, behind revision "
            f"{exc.requested} this watch resumes after (restored from an older state?); what was printed after "
            f"{exc.revision} may not exist there: re-read the keys, then watch again (without --from)",
            err=True,
        )
        sys.exit(EXIT_REVISION_AHEAD)
