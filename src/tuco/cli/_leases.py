"""tuco lease grant|list|keepalive|revoke and tuco token create|list|revoke."""

from __future__ import annotations

import time

import click

from tuco.cli._common import client_command, echo_json, escape, usage
from tuco.cli._keys import _duration_seconds, _lease_id
from tuco.client import Client, Grant, Token

__all__ = ["lease", "token"]


@click.group()
def lease() -> None:
    """Grant, list, show, keep alive and revoke leases (keys put with --lease ID are deleted when the lease ends)."""


@lease.command()
@click.argument("ttl")
@click.option("--json", "as_json", is_flag=True, help="The same as --output json: id, ttl, expires_at, revision.")
@client_command
def grant(client: Client, output: str, ttl: str, as_json: bool) -> None:
    """Grant a lease that ends TTL from now unless kept alive (30s, 5m...); print its id."""
    granted = client.grant(_duration_seconds(ttl, "TTL"))
    if output == "json" or as_json:
        echo_json(
            {"id": granted.id, "ttl": granted.ttl, "expires_at": granted.expires_at, "revision": granted.revision}
        )
    else:
        click.echo(str(granted.id))


@lease.command(name="list")
@client_command
def lease_list(client: Client, output: str) -> None:
    """Print each of your live leases (an admin's: all): id, ttl (s), seconds left, key count, a tab between."""
    leases = client.leases()
    if output == "json":
        echo_json([item._asdict() for item in leases])
        return
    for item in leases:
        click.echo(f"{item.id}\t{item.ttl:g}\t{item.remaining:g}\t{item.key_count}")


@lease.command()
@click.argument("id")
@client_command
def keepalive(client: Client, output: str, id: str) -> None:
    """Move lease ID's end to its ttl from now; print the new end (Unix ms). Exit 1 if it already ended."""
    kept = client.keepalive(_lease_id(id))
    if output == "json":
        echo_json({"id": kept.id, "ttl": kept.ttl, "expires_at": kept.expires_at, "revision": kept.revision})
    else:
        click.echo(str(kept.expires_at))


@lease.command()
@click.argument("id")
@client_command
def show(client: Client, output: str, id: str) -> None:
    """Print lease ID: its ttl, its end (Unix ms), seconds left, then its keys one a line. Exit 1 if it ended."""
    found = client.lease(_lease_id(id))
    left = max(found.expires_at / 1000 - time.time(), 0.0)
    if output == "json":
        echo_json(
            {
                "id": found.id,
                "ttl": found.ttl,
                "expires_at": found.expires_at,
                "remaining": round(left, 3),
                "keys": list(found.keys or ()),
            }
        )
        return
    click.echo(f"{found.id}\t{found.ttl:g}\t{found.expires_at}\t{left:.3f}")
    for key in found.keys or ():
        click.echo(escape(key))


@lease.command()
@click.argument("id")
@client_command
def revoke(client: Client, output: str, id: str) -> None:
    """End lease ID now, deleting its keys; print how many. Exit 1 if there is no such lease."""
    revoked = client.revoke(_lease_id(id))
    if output == "json":
        echo_json({"id": revoked.id, "revision": revoked.revision, "deleted_keys": revoked.deleted_keys})
    else:
        click.echo(str(revoked.deleted_keys))


@click.group()
def token() -> None:
    """Create, list and revoke tokens (needs an admin token on every key, e.g. the bootstrap token)."""


def _grant_of(text: str) -> Grant:
    prefix, sep, permission = text.rpartition("=")
    if not sep or permission not in ("read", "write", "admin", "metrics"):
        usage(
            "--grant takes PREFIX=read, PREFIX=write or PREFIX=admin (='' for every key), "
            f"or =metrics (/metrics only, no key), not {text!r}"
        )
    return Grant(prefix, permission)


def _token_json(item: Token, *, created: bool = False) -> dict[str, object]:
    """A token as the API shows it; ``created``: with its ``token`` (the secret, or null for a certificate)."""
    shown: dict[str, object] = {
        "id": item.id,
        "description": item.description,
        "grants": [{"prefix": g.prefix, "permission": g.permission} for g in item.grants],
        "expires_at": item.expires_at,
    }
    if item.cert is not None:
        shown["cert"] = item.cert
    if created:
        shown["token"] = item.token
    return shown


@token.command(name="create")
@click.option("--grant", "grants", multiple=True, required=True, metavar="PREFIX=PERM", help="read, write or admin.")
@click.option("--description", default="", help="What the token is for (shown by list and in audit lines).")
@click.option("--expires-at", metavar="RFC3339", help="When it stops working, e.g. 2027-01-01T00:00:00Z.")
@click.option(
    "--cert",
    "cert_name",
    metavar="KIND:NAME",
    help="Grant a client certificate identity, no secret: dns:NAME, uri:URI, email:ADDR, ip:ADDR or cn:NAME.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --output json: id, token, grants...")
@client_command
def token_create(
    client: Client,
    output: str,
    grants: tuple[str, ...],
    description: str,
    expires_at: str | None,
    cert_name: str | None,
    as_json: bool,
) -> None:
    """Create a token and print it (shown this once; store it as a secret), or its id with --cert."""
    created = client.create_token(
        [_grant_of(text) for text in grants], description=description, expires_at=expires_at, cert=cert_name
    )
    if output == "json" or as_json:
        echo_json(_token_json(created, created=True))
    else:
        click.echo(created.token or created.id)


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="The same as --output json.")
@client_command
def token_list(client: Client, output: str, as_json: bool) -> None:
    """Print each token: id, a tab, token or cert:NAME, its grants, its expiry, its description (never a secret)."""
    tokens = client.tokens()
    if output == "json" or as_json:
        echo_json([_token_json(item) for item in tokens])
        return
    for item in tokens:
        grants = ",".join(f"{g.prefix}={g.permission}" for g in item.grants)
        who = f"cert:{item.cert}" if item.cert else "token"
        click.echo(f"{item.id}\t{who}\t{grants}\t{item.expires_at or '-'}\t{escape(item.description)}")


@token.command(name="revoke")
@click.argument("id")
@client_command
def token_revoke(client: Client, output: str, id: str) -> None:
    """Revoke token ID (exit 1 if there is no such token)."""
    if not id.isalnum() or len(id) > 64:
        usage(f"a token id is the 16 hex digits 'tuco token list' shows, not {id!r}")
    client.revoke_token(id)
