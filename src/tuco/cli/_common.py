"""What every client command shares: the connection options, the exit codes, turning errors into them."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import sys
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
    "EXIT_NOT_FOUND",
    "EXIT_PRECONDITION_FAILED",
    "EXIT_REFUSED",
    "EXIT_REVISION_AHEAD",
    "EXIT_UNAUTHORIZED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "answers",
    "client_command",
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

F = TypeVar("F", bound=Callable[..., Any])


def usage(message: str) -> NoReturn:
    """A usage or configuration mistake: one line, exit 2."""
    click.echo(f"tuco: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _not_found(error: TucoError) -> bool:
    return isinstance(error, NoSuchKeyError | LeaseNotFoundError) or error.code == "no_such_token"


@contextlib.contextmanager
def answers() -> Iterator[None]:
    """Turn what the server answered (or that it did not) into one line on stderr and the exit code."""
    try:
        yield
    except ServerUnreachableError as exc:
        click.echo(f"tuco: cannot reach the server: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except ConfigurationError as exc:
        usage(str(exc))
    except TucoError as exc:
        detail = f"tuco: {exc.status} {exc.code}: {exc}"
        if isinstance(exc, PreconditionFailedError) and exc.current:
            detail += f" (current revision {exc.current})"
        click.echo(detail, err=True)
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
        help="Server URL [env: TUCO_URL].",
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
        cert = (client_cert, client_key or client_cert) if client_cert is not None else None
        with answers():
            client = Client(url, token=token or _read_token(token_file), ca_file=cacert, cert=cert)
        with client, answers():
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
