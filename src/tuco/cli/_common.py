"""What every client command shares: the connection options, the exit codes, turning errors into them."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from tuco.errors import (
    ConfigurationError,
    HistoryCompactedError,
    LeaseNotFoundError,
    NoSuchKeyError,
    PreconditionFailedError,
    RevisionAheadError,
    ServerUnreachableError,
    TucoError,
)

__all__ = [
    "CA_OPTION",
    "EXIT_HISTORY_COMPACTED",
    "EXIT_LOST",
    "EXIT_NOT_FOUND",
    "EXIT_PRECONDITION_FAILED",
    "EXIT_REFUSED",
    "EXIT_REVISION_AHEAD",
    "EXIT_TIMEOUT",
    "EXIT_UNAUTHORIZED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "GLOBAL_OPTIONS",
    "Progress",
    "answers",
    "client_command",
    "duration_seconds",
    "echo_json",
    "escape",
    "escape_value",
    "key_argument",
    "usage",
]

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_PRECONDITION_FAILED = 4
EXIT_HISTORY_COMPACTED = 5
EXIT_UNAUTHORIZED = 6
EXIT_REFUSED = 7
EXIT_REVISION_AHEAD = 8
EXIT_TIMEOUT = 9
EXIT_LOST = 10

_DURATION = re.compile(r"(\d{1,12}(?:\.\d{1,3})?)(ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

F = TypeVar("F", bound=Callable[..., Any])


def usage(message: str) -> NoReturn:
    """A usage or configuration mistake: one line, exit 2."""
    click.echo(f"tuco: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _not_found(error: TucoError) -> bool:
    return isinstance(error, NoSuchKeyError | LeaseNotFoundError) or error.code == "no_such_token"


def duration_seconds(text: str, what: str) -> float:
    """Seconds of ``30s``, ``500ms``, ``5m``, ``1h``, ``2d`` or a bare number of seconds (as the server reads a ttl)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or float(found.group(1)) * _UNIT_SECONDS[found.group(2)] < 0.001:
        usage(f"{what} takes a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds), not {text!r}")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def _error_json(status: int, code: str, message: str, **extra: object) -> None:
    click.echo(json.dumps({"error": code, "status": status, "message": message, **extra}, ensure_ascii=False), err=True)


@contextlib.contextmanager
def answers(output: str = "raw") -> Iterator[None]:
    """Turn what the server answered (or that it did not) into one line on stderr and the exit code.

    With ``-o json`` the line is a JSON object: ``error`` (the code), ``status``, ``message``.
    """
    as_json = output == "json"
    try:
        yield
    except ServerUnreachableError as exc:
        if as_json:
            _error_json(0, exc.code, f"cannot reach the server: {exc}")
        else:
            click.echo(f"tuco: cannot reach the server: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except ConfigurationError as exc:
        if as_json:
            _error_json(0, exc.code, str(exc))
            sys.exit(EXIT_USAGE)
        usage(str(exc))
    except TucoError as exc:
        detail = f"tuco: {exc.status} {exc.code}: {exc}"
        current = exc.current if isinstance(exc, PreconditionFailedError) else 0
        if current:
            detail += f" (current revision {current})"
        if as_json:
            _error_json(exc.status, exc.code, str(exc), **({"current_revision": current} if current else {}))
        else:
            click.echo(detail, err=True)
            if exc.status == 401:  # the person at the terminal needs the option, not the HTTP header
                click.echo("tuco: give the token with --token-file FILE (or TUCO_TOKEN_FILE, or TUCO_TOKEN)", err=True)
        if _not_found(exc):
            sys.exit(EXIT_NOT_FOUND)
        if isinstance(exc, PreconditionFailedError):
            sys.exit(EXIT_PRECONDITION_FAILED)
        if isinstance(exc, HistoryCompactedError):
            sys.exit(EXIT_HISTORY_COMPACTED)
        if isinstance(exc, RevisionAheadError):
            sys.exit(EXIT_REVISION_AHEAD)
        if exc.status in (401, 403):
            sys.exit(EXIT_UNAUTHORIZED)
        sys.exit(EXIT_REFUSED)


CA_OPTION = click.option(
    "--cacert",
    envvar="TUCO_CA_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA bundle to verify an HTTPS server [env: TUCO_CA_FILE].",
)
"""--cacert: every command that talks to a server takes it (tuco health too)."""

_CONNECTION_OPTIONS = (
    click.option(
        "--url",
        envvar="TUCO_URL",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="Server URL, or several separated by commas (reads spread, failover) [env: TUCO_URL].",
    ),
    CA_OPTION,
    click.option(
        "--token",
        envvar="TUCO_TOKEN",
        metavar="TOKEN",
        help="Bearer token [env: TUCO_TOKEN; prefer it or --token-file: a command line is visible to ps].",
    ),
    click.option(
        "--token-file",
        envvar="TUCO_TOKEN_FILE",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="File holding the bearer token (a trailing newline is ignored) [env: TUCO_TOKEN_FILE].",
    ),
    click.option(
        "--client-cert",
        "client_cert",
        envvar="TUCO_CLIENT_CERT_FILE",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="PEM client certificate (and key, unless --client-key) for mutual TLS [env: TUCO_CLIENT_CERT_FILE].",
    ),
    click.option(
        "--client-key",
        "client_key",
        envvar="TUCO_CLIENT_KEY_FILE",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="PEM private key of --client-cert [env: TUCO_CLIENT_KEY_FILE].",
    ),
    click.option(
        "--output",
        "-o",
        type=click.Choice(["raw", "json"]),
        default="raw",
        show_default=True,
        help="raw: the value's bytes, or lines for people; json: one JSON document (values base64).",
    ),
)


def _read_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        usage(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}")


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

GLOBAL_OPTIONS = (
    click.option("--url", help="Server URL, or several separated by commas [env: TUCO_URL]."),
    click.option("--cacert", type=_FILE, help="CA bundle to verify an HTTPS server [env: TUCO_CA_FILE]."),
    click.option("--token", metavar="TOKEN", help="Bearer token [env: TUCO_TOKEN]."),
    click.option("--token-file", type=_FILE, help="File holding the bearer token [env: TUCO_TOKEN_FILE]."),
    click.option("--client-cert", "client_cert", type=_FILE, help="PEM client certificate for mutual TLS."),
    click.option("--client-key", "client_key", type=_FILE, help="PEM private key of --client-cert."),
    click.option("--output", "-o", type=click.Choice(["raw", "json"]), help="raw (default) or json."),
)
"""The connection options ``tuco`` takes before the command too (``tuco --url X get k``); the command's win."""


def _from_group(ctx: click.Context, given: dict[str, Any]) -> dict[str, Any]:
    """An option the command did not get explicitly takes the group's (``tuco -o json get k``)."""
    root = ctx.find_root()
    if root is ctx:
        return given
    chosen = dict(given)
    for name, value in root.params.items():
        if value is None or name not in given:
            continue
        source = ctx.get_parameter_source(name)
        if source in (None, click.core.ParameterSource.DEFAULT, click.core.ParameterSource.ENVIRONMENT):
            chosen[name] = value
    return chosen


def client_command(function: F) -> F:
    """Add the connection and output options; call ``function(client, output, ...)`` with a connected Client."""
    from tuco.client import Client

    @functools.wraps(function)
    def run(
        url: str,
        cacert: Path | None,
        token: str | None,
        token_file: Path | None,
        client_cert: Path | None,
        client_key: Path | None,
        output: str,
        **arguments: Any,
    ) -> Any:
        options = _from_group(
            click.get_current_context(),
            {
                "url": url,
                "cacert": cacert,
                "token": token,
                "token_file": token_file,
                "client_cert": client_cert,
                "client_key": client_key,
                "output": output,
            },
        )
        url, cacert, token, token_file = options["url"], options["cacert"], options["token"], options["token_file"]
        client_cert, client_key, output = options["client_cert"], options["client_key"], options["output"]
        cert = (client_cert, client_key or client_cert) if client_cert is not None else None
        with answers(output):
            client = Client(url, token=token or _read_token(token_file), ca_file=cacert, cert=cert)
        with client, answers(output):
            return function(client, output, **arguments)

    command: Any = run
    for option in reversed(_CONNECTION_OPTIONS):
        command = option(command)
    return command  # type: ignore[no-any-return]


def _key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A key must be text: argv bytes that are not UTF-8 arrive as surrogates and are refused here."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        usage("a key must be valid UTF-8 (tuco keys are text)")
    return value


def key_argument(name: str = "key", **options: Any) -> Callable[[F], F]:
    """A KEY argument that refuses bytes that are not UTF-8 with a usage error."""
    return click.argument(name, callback=_key, **options)


def escape(text: str) -> str:
    """A key or description on one line: backslashes doubled, tabs and line breaks escaped."""
    return _escape_controls(text.replace("\\", "\\\\"))


def escape_value(value: bytes) -> str:
    """A value on one line: UTF-8 as is, other bytes as \\xNN, tabs and line breaks escaped."""
    return _escape_controls(value.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace"))


def _escape_controls(text: str) -> str:
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def b64(value: bytes | None) -> str | None:
    return base64.b64encode(value).decode("ascii") if value is not None else None


def echo_json(document: object) -> None:
    """One JSON document on a line (non-ASCII kept as is)."""
    click.echo(json.dumps(document, ensure_ascii=False))


class Progress:
    """A one-line progress report on stderr while a terminal watches (nothing in a log or a pipe), 5 times a second.

    With ``total`` it shows a percentage of it, else the count divided by ``scale`` and its ``unit``.
    """

    def __init__(self, what: str, total: int = 0, *, scale: int = 1 << 20, unit: str = "MiB") -> None:
        self._what = what
        self._total = total
        self._scale = scale
        self._unit = unit
        self._next = 0.0
        self._shown = False
        self._live = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if not self._live or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + 0.2
        self._shown = True
        shown = f"{done * 100 // self._total}%" if self._total else f"{done // self._scale} {self._unit}"
        click.echo(f"\r{self._what}: {shown}", err=True, nl=False)

    def done(self) -> None:
        if self._shown:
            click.echo("", err=True)
