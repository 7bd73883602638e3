"""The ``tuco`` command: run the server, talk to one, inspect and repair a log file.

Exit codes scripts can rely on: 0 success, 1 the key or lease does not exist (get,
lease keepalive/revoke, put --lease), the log has problems (verify, compact) or the server
is not healthy (health), 2 usage or configuration error, 3 the request failed (server
unreachable, refused or broken), 4 a condition did not hold (``--if-match``,
``--create-only``: the server answered 412).
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import click
import httpx

from tuco.config import Settings, load_settings
from tuco.errors import ConfigurationError, LogError

__all__ = ["main"]

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_REQUEST_FAILED = 3
EXIT_PRECONDITION_FAILED = 4
EXIT_HISTORY_COMPACTED = 5


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tuco")
def main() -> None:
    """tuco: a dependable key-value store service."""


def _settings_options(command: Any) -> Any:
    """One ``--flag`` per setting, mirroring its ``TUCO_*`` variable."""
    for name, field in reversed(list(Settings.model_fields.items())):
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} [env: TUCO_{name.upper()}]"
        command = click.option(flag, name, default=None, metavar="VALUE", help=help_text)(command)
    return command


@main.command()
@_settings_options
def serve(**options: str | None) -> None:
    """Run the server (configured by TUCO_* variables; flags override them)."""
    from tuco.runtime import run

    try:
        settings = load_settings(**options)
        # Like a malformed setting, these stop the start before anything is logged: one line on stderr.
        from tuco.assembly import access_from
        from tuco.runtime import check_exposure

        check_exposure(settings)
        access_from(settings)
    except ConfigurationError as exc:
        click.echo(f"tuco: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(run(settings))


_url_only = click.option(
    "--url", envvar="TUCO_URL", default="http://127.0.0.1:8080", show_default=True, help="Server URL [env: TUCO_URL]."
)
_credentials: dict[str, Any] = {}
"""What every client request carries: the bearer token, the client certificate (set by the options' callbacks)."""


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            _credentials[name] = value
        return value

    return callback


def _url_option(command: Any) -> Any:
    """--url, and the credentials: --token / TUCO_TOKEN, --token-file / TUCO_TOKEN_FILE, a client certificate."""
    options = [
        click.option(
            "--token",
            envvar="TUCO_TOKEN",
            expose_value=False,
            callback=_remember("token"),
            metavar="TOKEN",
            help="Bearer token [env: TUCO_TOKEN; prefer it, or --token-file: a command line is visible to ps].",
        ),
        click.option(
            "--token-file",
            envvar="TUCO_TOKEN_FILE",
            expose_value=False,
            callback=_remember("token_file"),
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="File holding the bearer token (a trailing newline is ignored) [env: TUCO_TOKEN_FILE].",
        ),
        click.option(
            "--client-cert",
            "client_cert",
            envvar="TUCO_CLIENT_CERT_FILE",
            expose_value=False,
            callback=_remember("cert"),
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="PEM client certificate (and key, unless --client-key) for mutual TLS [env: TUCO_CLIENT_CERT_FILE].",
        ),
        click.option(
            "--client-key",
            "client_key",
            envvar="TUCO_CLIENT_KEY_FILE",
            expose_value=False,
            callback=_remember("key"),
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="PEM private key of --client-cert [env: TUCO_CLIENT_KEY_FILE].",
        ),
    ]
    for option in options:
        command = option(command)
    return _url_only(command)


def _auth_headers() -> dict[str, str]:
    token = _credentials.get("token")
    path = _credentials.get("token_file")
    if token is None and path is not None:
        try:
            token = Path(path).read_text(encoding="ascii").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            _usage(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _verify(cacert: Path | None) -> ssl.SSLContext | bool:
    cert = _credentials.get("cert")
    if cacert is None and cert is None:
        return True
    context = ssl.create_default_context(cafile=str(cacert) if cacert else None)
    if cert is not None:
        key = _credentials.get("key")
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


_ca_option = click.option(
    "--cacert",
    envvar="TUCO_CA_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CA bundle to verify an HTTPS server [env: TUCO_CA_FILE].",
)
_consistent_option = click.option(
    "--consistent", is_flag=True, help="Read after every write any replica acknowledged (postgres backend)."
)


def _request(
    method: str,
    url: str,
    key: str,
    cacert: Path | None,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    target = f"{url.rstrip('/')}/v1/key/{quote(key, safe='').replace('.', '%2E')}"
    with _client(url, cacert) as client:
        return _send(client, url, method, target, content=content, params=params, headers=headers)


def _client(url: str, cacert: Path | None) -> httpx.Client:
    return httpx.Client(verify=_verify(cacert), timeout=30.0, headers=_auth_headers())


def _send(client: httpx.Client, url: str, method: str, target: str, **options: Any) -> httpx.Response:
    try:
        return client.request(method, target, **options)
    except httpx.HTTPError as exc:
        click.echo(f"tuco: cannot reach {url}: {exc}", err=True)
        sys.exit(EXIT_REQUEST_FAILED)


def _conditions(if_match: str | None, create_only: bool = False) -> dict[str, str]:
    """The conditional headers of --if-match REV (a revision, or * for "exists") and --create-only."""
    if if_match is not None and create_only:
        click.echo("tuco: --if-match and --create-only exclude each other", err=True)
        sys.exit(EXIT_USAGE)
    if create_only:
        return {"If-None-Match": "*"}
    if if_match is None:
        return {}
    if if_match == "*":
        return {"If-Match": "*"}
    revision = if_match.strip('"')
    if not revision.isdigit() or int(revision) < 1:
        click.echo(f"tuco: --if-match takes a revision (a positive number) or *, not {if_match!r}", err=True)
        sys.exit(EXIT_USAGE)
    return {"If-Match": f'"{int(revision)}"'}


def _fail(response: httpx.Response) -> None:
    try:
        body = response.json()
        detail = f"{body['error']}: {body['message']}"
    except (ValueError, KeyError, TypeError):
        detail = response.text[:200]
    if response.status_code == 412:
        etag = response.headers.get("etag")
        detail += f" (current revision {etag.strip(chr(34))})" if etag else ""
    click.echo(f"tuco: {response.status_code} {detail}", err=True)
    if response.status_code == 404:
        sys.exit(EXIT_NOT_FOUND)
    sys.exit(EXIT_PRECONDITION_FAILED if response.status_code == 412 else EXIT_REQUEST_FAILED)


@main.command()
@click.argument("key")
@click.argument("value", required=False)
@_url_option
@_ca_option
@click.option("--if-match", "if_match", metavar="REV", help="Write only if KEY is at revision REV (* : if it exists).")
@click.option("--create-only", is_flag=True, help="Write only if KEY does not exist.")
@click.option("--ttl", metavar="DURATION", help="Delete KEY this long after the write (30s, 500ms, 5m, 1h, 2d).")
@click.option("--lease", metavar="ID", help="Attach KEY to lease ID: it is deleted when the lease ends.")
def put(
    key: str,
    value: str | None,
    url: str,
    cacert: Path | None,
    if_match: str | None,
    create_only: bool,
    ttl: str | None,
    lease: str | None,
) -> None:
    """Store VALUE under KEY; VALUE '-' or absent reads the value from standard input.

    With --if-match or --create-only, a condition that does not hold exits 4;
    --lease with a lease that does not exist (or expired) exits 1.
    """
    headers = _conditions(if_match, create_only)
    params = _expiry_params(ttl, lease)
    content = sys.stdin.buffer.read() if value in (None, "-") else value.encode()
    response = _request("PUT", url, key, cacert, content, params=params or None, headers=headers)
    if response.status_code != 201:
        _fail(response)


def _expiry_params(ttl: str | None, lease: str | None) -> dict[str, str]:
    """The query of --ttl / --lease, checked here so a typo is a usage error (exit 2), not a request."""
    if ttl is not None and lease is not None:
        _usage("--ttl and --lease exclude each other: a key expires at one deadline")
    if ttl is not None:
        _check_duration(ttl, "--ttl")
        return {"ttl": ttl}
    if lease is not None:
        if not lease.isdigit() or int(lease) < 1:
            _usage(f"--lease takes a lease id (a positive number, as 'tuco lease grant' prints), not {lease!r}")
        return {"lease": lease}
    return {}


def _check_duration(text: str, what: str) -> None:
    from tuco.errors import InvalidParameterError
    from tuco.http.api import parse_ttl

    try:
        parse_ttl(text.encode(), 1 << 62)  # the server applies its own cap
    except InvalidParameterError:
        _usage(f"{what} takes a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds), not {text!r}")


def _usage(message: str) -> None:
    click.echo(f"tuco: {message}", err=True)
    sys.exit(EXIT_USAGE)


@main.command()
@click.option(
    "--url",
    envvar="TUCO_URL",
    default=None,
    help="Server URL [env: TUCO_URL]; default: the address TUCO_HOST, TUCO_PORT and TUCO_TLS_* configure.",
)
@_ca_option
@click.option("--ready", is_flag=True, help="Check /readyz (replayed, takes writes) instead of /healthz (alive).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True, help="Seconds to wait.")
def health(url: str | None, cacert: Path | None, ready: bool, timeout: float) -> None:
    """Exit 0 if the server answers 200 on /healthz (--ready: /readyz), else say why on stderr and exit 1.

    Meant for container health checks (no curl needed): without --url it checks the
    server that `tuco serve` would start with the same TUCO_* settings, over HTTPS
    when TUCO_TLS_CERT_FILE is set (verified against --cacert if given; otherwise
    the local server's certificate is not verified, as no secret is sent).
    """
    verify: ssl.SSLContext | bool = True
    if url is None:
        try:
            settings = load_settings()
        except ConfigurationError as exc:
            _unhealthy(str(exc))
        url = _own_url(settings)
        verify = bool(cacert) or not settings.tls
    if cacert:
        verify = ssl.create_default_context(cafile=str(cacert))
    path = "/readyz" if ready else "/healthz"
    try:
        with httpx.Client(verify=verify, timeout=timeout) as client:
            response = client.get(f"{url.rstrip('/')}{path}")
    except httpx.HTTPError as exc:
        _unhealthy(f"cannot reach {url}: {exc or type(exc).__name__}")
    except ValueError as exc:  # a URL httpx cannot even parse
        _unhealthy(f"cannot reach {url}: {exc}")
    if response.status_code != 200:
        _unhealthy(f"{path} answered {response.status_code}: {response.text[:200]}")


def _own_url(settings: Settings) -> str:
    """The URL a local client reaches `tuco serve` at: a wildcard address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.port}"


def _unhealthy(message: str) -> NoReturn:
    click.echo(f"tuco: unhealthy: {message}", err=True)
    sys.exit(1)


@main.group()
def lease() -> None:
    """Grant, keep alive and revoke leases (keys put with --lease ID are deleted when the lease ends)."""


def _lease_request(method: str, url: str, path: str, cacert: Path | None, **options: Any) -> httpx.Response:
    with _client(url, cacert) as client:
        return _send(client, url, method, f"{url.rstrip('/')}/v1/leases{path}", **options)


def _lease_id(text: str) -> str:
    if not text.isdigit() or int(text) < 1:
        _usage(f"a lease id is a positive number, as 'tuco lease grant' prints, not {text!r}")
    return str(int(text))


@lease.command()
@click.argument("ttl")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer: id, ttl, expires_at, revision.")
@_url_option
@_ca_option
def grant(ttl: str, as_json: bool, url: str, cacert: Path | None) -> None:
    """Grant a lease that ends TTL from now unless kept alive (30s, 5m...); print its id."""
    _check_duration(ttl, "TTL")
    response = _lease_request("POST", url, "", cacert, json={"ttl": ttl})
    if response.status_code != 201:
        _fail(response)
    answer = response.json()
    click.echo(json.dumps(answer) if as_json else str(answer["id"]))


@lease.command()
@click.argument("id")
@_url_option
@_ca_option
def keepalive(id: str, url: str, cacert: Path | None) -> None:
    """Move lease ID's end to its ttl from now; print the new end (Unix ms). Exit 1 if it already ended."""
    response = _lease_request("POST", url, f"/{_lease_id(id)}/keepalive", cacert)
    if response.status_code != 200:
        _fail(response)
    click.echo(str(response.json()["expires_at"]))


@lease.command()
@click.argument("id")
@_url_option
@_ca_option
def revoke(id: str, url: str, cacert: Path | None) -> None:
    """End lease ID now, deleting its keys; print how many. Exit 1 if there is no such lease."""
    response = _lease_request("DELETE", url, f"/{_lease_id(id)}", cacert)
    if response.status_code != 200:
        _fail(response)
    click.echo(str(response.json()["deleted_keys"]))


@main.command()
@click.argument("key")
@_url_option
@_ca_option
@_consistent_option
def get(key: str, url: str, cacert: Path | None, consistent: bool) -> None:
    """Print the value of KEY exactly as stored (exit 1 if there is none)."""
    params = {"consistent": "true"} if consistent else None
    response = _request("GET", url, key, cacert, params=params)
    if response.status_code != 200:
        _fail(response)
    sys.stdout.buffer.write(response.content)
    sys.stdout.buffer.flush()


@main.command()
@click.argument("key")
@_url_option
@_ca_option
@click.option("--if-match", "if_match", metavar="REV", help="Delete only if KEY is at revision REV (* : if it exists).")
def delete(key: str, url: str, cacert: Path | None, if_match: str | None) -> None:
    """Delete KEY (succeeds also when it does not exist, unless --if-match says otherwise: exit 4)."""
    response = _request("DELETE", url, key, cacert, headers=_conditions(if_match))
    if response.status_code != 200:
        _fail(response)


@main.command(name="list")
@click.argument("prefix", default="")
@click.option("--keys-only", is_flag=True, help="Print only the keys.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: revision and every item.")
@_url_option
@_ca_option
def list_keys(prefix: str, keys_only: bool, as_json: bool, url: str, cacert: Path | None) -> None:
    """Print the keys under PREFIX (all keys without one) in byte order, at one revision.

    Lines are KEY, a tab and the value (UTF-8, with backslash escapes for other
    bytes, tabs and newlines); --json prints the API's items (values base64).
    """
    target = f"{url.rstrip('/')}/v1/keys"
    params: dict[str, str] = {"prefix": prefix, "limit": "1000"}
    if keys_only:
        params["keys_only"] = "true"
    items: list[dict[str, Any]] = []
    revision = 0
    with _client(url, cacert) as client:
        while True:
            response = _send(client, url, "GET", target, params=params)
            if response.status_code != 200:
                _fail(response)
            page = response.json()
            revision = page["revision"]
            if as_json:
                items += page["items"]
            else:
                for item in page["items"]:
                    click.echo(_key_line(item, keys_only))
            if page["next_page_token"] is None:
                break
            params["page_token"] = page["next_page_token"]
    if as_json:
        click.echo(json.dumps({"revision": revision, "items": items}, ensure_ascii=False))


def _key_line(item: dict[str, Any], keys_only: bool) -> str:
    key = _escape(item["key"])
    if keys_only:
        return key
    value = base64.b64decode(item["value"]).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return f"{key}\t{_escape_controls(value)}"


def _escape(text: str) -> str:
    return _escape_controls(text.replace("\\", "\\\\"))


def _escape_controls(text: str) -> str:
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# -- watch ----------------------------------------------------------------------


@main.command()
@click.argument("prefix", default="")
@click.option("--from", "start", metavar="REV", help="Start with the changes at revision REV (default: from now).")
@click.option("--json", "as_json", is_flag=True, help="Print each event as one JSON object (values base64).")
@_url_option
@_ca_option
def watch(prefix: str, start: str | None, as_json: bool, url: str, cacert: Path | None) -> None:
    """Print every change under PREFIX as it happens, one line each, until interrupted.

    Lines are REVISION, a tab, put or delete, a tab, KEY (and for a put a tab
    and the value, escaped as by list). When the server ends the stream (a slow
    reader, a shutdown) or the connection drops, it reconnects and resumes after
    the last revision it saw, so nothing is missed or printed twice. Exits 0 on
    Ctrl-C, 5 if the changes asked for are no longer retained (410).
    """
    if start is not None and (not start.isdigit() or int(start) < 1):
        click.echo(f"tuco: --from takes a revision (a positive number), not {start!r}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        _watch_forever(prefix, start, as_json, url, cacert)
    except KeyboardInterrupt:
        sys.exit(0)


def _watch_forever(prefix: str, start: str | None, as_json: bool, url: str, cacert: Path | None) -> None:
    """Stream, and on every end or drop reconnect with Last-Event-ID = the last revision seen."""
    target = f"{url.rstrip('/')}/v1/watch"
    last: int | None = int(start) - 1 if start is not None else None
    delay = 0.0
    with httpx.Client(
        verify=_verify(cacert), timeout=httpx.Timeout(30.0, read=90.0), headers=_auth_headers()
    ) as client:
        while True:
            if delay:
                time.sleep(delay)
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with client.stream("GET", target, params={"prefix": prefix}, headers=headers) as response:
                    if response.status_code == 410:
                        response.read()
                        body = response.json()
                        click.echo(
                            f"tuco: 410 history_compacted: the changes after revision {last} are no longer "
                            f"retained; the oldest available is {body.get('oldest_revision')} "
                            f"(start again with --from)",
                            err=True,
                        )
                        sys.exit(EXIT_HISTORY_COMPACTED)
                    if response.status_code == 503:
                        response.read()
                        delay = min(max(delay * 2, 0.5), 5.0)
                        continue
                    if response.status_code != 200:
                        response.read()
                        _fail(response)
                    for revision in _print_events(response, as_json):
                        last = revision
                        delay = 0.0
            except httpx.HTTPError as exc:
                click.echo(f"tuco: watch interrupted ({type(exc).__name__}); resuming after revision {last}", err=True)
            delay = min(max(delay * 2, 0.2), 5.0)


def _print_events(response: httpx.Response, as_json: bool) -> Iterator[int]:
    """Print the stream's put and delete events; yield each revision the stream covered (progress included)."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            if line.startswith(": watching after revision "):  # where a stream without --from began
                yield int(line.rpartition(" ")[2])
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            continue
        event, ident, data = fields.get("event"), fields.get("id"), fields.get("data")
        fields = {}
        if event in ("put", "delete") and data is not None:
            item = json.loads(data)
            if as_json:
                click.echo(json.dumps(dict(item, type=event), ensure_ascii=False))
            elif event == "put":
                value = base64.b64decode(item["value"]).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
                click.echo(f"{item['revision']}\tput\t{_escape(item['key'])}\t{_escape_controls(value)}")
            else:
                click.echo(f"{item['revision']}\tdelete\t{_escape(item['key'])}")
            sys.stdout.flush()
        if event == "cancel" and data is not None:
            yield int(json.loads(data)["resume_revision"]) - 1
            return
        if ident is not None and ident.isdigit():
            yield int(ident)


# -- tokens ---------------------------------------------------------------------


@main.group()
def token() -> None:
    """Create, list and revoke tokens (needs an admin token on every key, e.g. the bootstrap token)."""


def _token_request(method: str, url: str, path: str, cacert: Path | None, **options: Any) -> httpx.Response:
    with _client(url, cacert) as client:
        return _send(client, url, method, f"{url.rstrip('/')}/v1/tokens{path}", **options)


def _grant_of(text: str) -> dict[str, str]:
    prefix, sep, permission = text.rpartition("=")
    if not sep or permission not in ("read", "write", "admin"):
        _usage(f"--grant takes PREFIX=read, PREFIX=write or PREFIX=admin (='' for every key), not {text!r}")
    return {"prefix": prefix, "permission": permission}


@token.command(name="create")
@click.option("--grant", "grants", multiple=True, required=True, metavar="PREFIX=PERM", help="read, write or admin.")
@click.option("--description", default="", help="What the token is for (shown by list and in audit lines).")
@click.option("--expires-at", metavar="RFC3339", help="When it stops working, e.g. 2027-01-01T00:00:00Z.")
@click.option("--cert", "cert_name", metavar="NAME", help="Grant a client certificate identity (CN or SAN), no secret.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer (id, token, grants...).")
@_url_option
@_ca_option
def token_create(
    grants: tuple[str, ...],
    description: str,
    expires_at: str | None,
    cert_name: str | None,
    as_json: bool,
    url: str,
    cacert: Path | None,
) -> None:
    """Create a token and print it (shown this once; store it as a secret), or its id with --cert."""
    body: dict[str, Any] = {"description": description, "grants": [_grant_of(g) for g in grants]}
    if expires_at is not None:
        body["expires_at"] = expires_at
    if cert_name is not None:
        body["cert"] = cert_name
    response = _token_request("POST", url, "", cacert, json=body)
    if response.status_code != 201:
        _fail(response)
    answer = response.json()
    click.echo(json.dumps(answer) if as_json else (answer["token"] or answer["id"]))


@token.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the server's answer.")
@_url_option
@_ca_option
def token_list(as_json: bool, url: str, cacert: Path | None) -> None:
    """Print each token: id, a tab, its grants, a tab, its expiry, a tab, its description (never a secret)."""
    response = _token_request("GET", url, "", cacert)
    if response.status_code != 200:
        _fail(response)
    tokens = response.json()["tokens"]
    if as_json:
        click.echo(json.dumps(tokens))
        return
    for item in tokens:
        grants = ",".join(f"{g['prefix']}={g['permission']}" for g in item["grants"])
        who = f"cert:{item['cert']}" if item.get("cert") else "token"
        click.echo(f"{item['id']}\t{who}\t{grants}\t{item['expires_at'] or '-'}\t{_escape(item['description'])}")


@token.command(name="revoke")
@click.argument("id")
@_url_option
@_ca_option
def token_revoke(id: str, url: str, cacert: Path | None) -> None:
    """Revoke token ID (exit 1 if there is no such token)."""
    if not id.isalnum() or len(id) > 64:
        _usage(f"a token id is the 16 hex digits 'tuco token list' shows, not {id!r}")
    response = _token_request("DELETE", url, f"/{id}", cacert)
    if response.status_code != 204:
        _fail(response)


@main.group()
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
def dump(path: Path) -> None:
    """Print every event: sequence, type, key and value (escaped so any byte is visible), and a PUT's revisions.

    The sequence is the mod revision; a PUT also shows its key's create revision
    and version, as a compacted entry records them or as replay derives them.
    """
    from tuco.core.events import EventType
    from tuco.log.file import LogReader

    reader = LogReader(path)
    revisions: dict[str, tuple[int, int]] = {}  # key -> (create revision, version): bounded by the live keys
    with _exit_on_log_error(path):
        for batch in reader:
            for event in batch:
                sequence, type, key, value, create_revision, version, _ = event
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
