"""tuco touch, tuco persist and tuco ttl: a key's deadline without sending its value."""

from __future__ import annotations

import time

import click

from tuco.cli._common import client_command, duration_seconds, echo_json, key_argument
from tuco.client import Client, Written

__all__ = ["persist", "touch", "ttl"]


def _show(output: str, key: str, written: Written) -> None:
    if output == "json":
        echo_json({"key": key, "revision": written.revision, "expires_at": written.expires_at})
    else:
        click.echo(str(written.revision))


@click.command()
@key_argument()
@click.argument("duration")
@client_command
def touch(client: Client, output: str, key: str, duration: str) -> None:
    """Make KEY expire DURATION from now (30s, 5m...), keeping its value; print its new revision (exit 1: absent)."""
    _show(output, key, client.touch(key, duration_seconds(duration, "DURATION")))


@click.command()
@key_argument()
@client_command
def persist(client: Client, output: str, key: str) -> None:
    """Make KEY never expire, keeping its value; print its new revision (exit 1: absent)."""
    _show(output, key, client.persist(key))


@click.command()
@key_argument()
@client_command
def ttl(client: Client, output: str, key: str) -> None:
    """Print the seconds KEY has left (by this machine's clock), or 'none' if it does not expire (exit 1: absent)."""
    entry = client.get(key)
    left = None if entry.expires_at is None else max(entry.expires_at / 1000 - time.time(), 0.0)
    if output == "json":
        echo_json({"key": key, "expires_at": entry.expires_at, "remaining": None if left is None else round(left, 3)})
    else:
        click.echo("none" if left is None else f"{left:.3f}")
