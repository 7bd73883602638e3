"""The ``tuco`` command: run the server, talk to one, inspect and repair a log file.

Exit codes scripts can rely on (docs/getting-started.md, the exit code table):

====  ==========================================================================
0     success (``lock``, ``elect``: the command's own status)
1     not found: the key, lease or token does not exist; the log has problems
      (verify, compact); the server is not healthy (``health``)
2     usage or configuration error (nothing was sent)
3     the server could not be reached (refused, reset, timed out)
4     a condition did not hold (``--if-match``, ``--create-only``: 412)
5     a watch start that is no longer retained (410)
6     unauthorized or forbidden (401, 403)
7     any other refusal by the server (400, 404 not_found, 413, 429, 503...)
8     the server's store is behind the revision asked for (409 revision_ahead)
9     ``--timeout`` ran out (``lock``, ``elect``, ``wait``)
10    the lock or leadership was lost while the command ran (it was sent SIGTERM)
====  ==========================================================================

The client commands run on :class:`tuco.client.Client` and need only httpx and
click; ``serve``, ``log`` and ``snapshot`` are loaded when called and need ``tuco[server]``.
"""

from __future__ import annotations

import importlib
import platform
import sys
from typing import Any

import click

from tuco.cli._common import EXIT_USAGE, GLOBAL_OPTIONS
from tuco.cli._coord import elect, lock, wait
from tuco.cli._deadline import persist, touch, ttl
from tuco.cli._health import health
from tuco.cli._keys import delete, get, list_keys, put, watch
from tuco.cli._leases import lease, token
from tuco.cli._transfer import export, import_keys
from tuco.cli._txn import history, txn

__all__ = ["main"]

_SERVER_COMMANDS = {
    "serve": ("tuco.cli._serve", "serve"),
    "log": ("tuco.cli._logfile", "log"),
    "snapshot": ("tuco.cli._backup", "snapshot"),  # reads and writes the log's record format: the core
}
"""Commands that need the server's dependencies: imported only when asked for."""


def _needs_server(name: str, missing: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def unavailable() -> None:
        click.echo(
            f"tuco: `tuco {name}` needs the server's dependencies ({missing} is not installed): "
            "pip install 'tuco[server]'",
            err=True,
        )
        sys.exit(EXIT_USAGE)

    unavailable.help = f"(needs tuco[server]: pip install 'tuco[server]'; {missing} is missing)"
    return unavailable


class _Main(click.Group):
    """The group, with ``serve`` and ``log`` imported on first use (a slim install lacks what they import)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_SERVER_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _SERVER_COMMANDS:
            module, attribute = _SERVER_COMMANDS[cmd_name]
            try:
                command: click.Command = getattr(importlib.import_module(module), attribute)
            except ImportError as exc:
                return _needs_server(cmd_name, exc.name or str(exc))
            return command
        return super().get_command(ctx, cmd_name)


def _group(function: Any) -> Any:
    for option in reversed(GLOBAL_OPTIONS):
        function = option(function)
    return function


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from tuco import __version__
    from tuco._build import build

    click.echo(f"tuco {__version__} ({build()} build, Python {platform.python_version()}, {platform.machine()})")
    ctx.exit()


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and which build is installed (compiled or pure Python), then exit.",
)
@_group
def main(**options: Any) -> None:
    """tuco: a dependable key-value store service.

    The connection options (--url, --token, -o...) go before or after the command.
    Shell completion: eval "$(_TUCO_COMPLETE=bash_source tuco)" (zsh_source, fish_source).
    """


_COMMANDS = (
    health,
    get,
    put,
    delete,
    list_keys,
    watch,
    wait,
    touch,
    persist,
    ttl,
    txn,
    history,
    lock,
    elect,
    lease,
    token,
)
for command in (*_COMMANDS, export, import_keys):
    main.add_command(command)
