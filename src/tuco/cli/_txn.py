"""``tuco txn``: a transaction from a JSON file or standard input, as ``POST /v1/txn`` takes it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tuco.cli._common import (
    EXIT_PRECONDITION_FAILED,
    b64,
    client_command,
    echo_json,
    escape,
    escape_value,
    key_argument,
    usage,
)
from tuco.client import Client, Item, Listed

__all__ = ["txn"]


def _item(item: Item) -> dict[str, object]:
    return {
        "key": item.key,
        "value": b64(item.value),
        "create_revision": item.create_revision,
        "mod_revision": item.mod_revision,
        "version": item.version,
    }


def _shown(result: Any) -> object:
    if isinstance(result, Listed):
        return {"items": [_item(item) for item in result.items], "more": result.more}
    if isinstance(result, Item):
        return _item(result)
    return result


@click.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@client_command
def txn(client: Client, output: str, file: Path | None) -> None:
    """Run the transaction in FILE (or standard input): {"compare": [...], "success": [...], "failure": [...]}.

    Prints "succeeded REVISION" or "failed REVISION", then one line per result
    (--output json: the whole answer). Exits 4 when the failure branch ran.
    """
    if file is None and sys.stdin.isatty():
        usage("no transaction given: pass a JSON file, or pipe it in (tuco txn < txn.json)")
    try:
        text = sys.stdin.read() if file is None or str(file) == "-" else file.read_text()
        document = json.loads(text)
    except OSError as exc:
        usage(f"cannot read {file}: {exc.strerror}")
    except ValueError:
        usage("the transaction is not JSON")
    if not isinstance(document, dict):
        usage('a transaction is a JSON object: {"compare": [...], "success": [...], "failure": [...]}')
    builder = client.txn()
    builder.compares = list(document.get("compare", []))
    builder.then.ops = list(document.get("success", []))
    builder.otherwise.ops = list(document.get("failure", []))
    result = builder.commit()
    if output == "json":
        echo_json(
            {
                "succeeded": result.succeeded,
                "revision": result.revision,
                "results": [_shown(r) for r in result.results],
            }
        )
    else:
        click.echo(f"{'succeeded' if result.succeeded else 'failed'} {result.revision}")
        for found in result.results:
            if isinstance(found, Listed):
                for item in found.items:
                    click.echo(f"{escape(item.key)}\t{escape_value(item.value or b'')}")
            elif isinstance(found, Item):
                click.echo(f"{escape(found.key)}\t{escape_value(found.value or b'')}")
            else:
                click.echo("" if found is None else str(found))
    if not result.succeeded:
        sys.exit(EXIT_PRECONDITION_FAILED)


@click.command()
@key_argument()
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Changes to show.")
@click.option("--before", type=click.IntRange(1), help="Only changes below this revision (a page's next_before).")
@client_command
def history(client: Client, output: str, key: str, limit: int, before: int | None) -> None:
    """Who changed KEY, when and how: its retained changes, newest first (exit 5 past the retained history).

    One line each: revision, put or delete, by, at (Unix ms), a delete's reason.
    """
    page = client.history(key, limit=limit, before=before)
    if output == "json":
        echo_json(
            {
                "changes": [
                    {name: value for name, value in change._asdict().items() if name != "value" and value is not None}
                    for change in page.changes
                ],
                "next_before": page.next_before,
            }
        )
        return
    for change in page.changes:
        fields = [str(change.revision), change.type, f"by={change.by or '?'}", f"at={change.at or '?'}"]
        if change.reason:
            fields.append(f"reason={change.reason}")
        click.echo("\t".join(fields))
