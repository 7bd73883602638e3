"""tuco serve: one flag per setting, typed and with its default, mirroring its TUCO_* variable."""

from __future__ import annotations

import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from tuco.cli._common import EXIT_USAGE
from tuco.config import Settings, load_settings
from tuco.errors import ConfigurationError

__all__ = ["serve"]


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
        return kinds[0] if len(kinds) == 1 else annotation
    return annotation


def _metavar(annotation: Any) -> str:
    kind = _unwrap(annotation)
    if typing.get_origin(kind) is typing.Literal:
        return "[" + "|".join(str(choice) for choice in typing.get_args(kind)) + "]"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "[" + "|".join(str(member.value) for member in kind) + "]"
    names = {int: "INTEGER", float: "NUMBER", Path: "PATH", SecretStr: "URL", str: "TEXT"}
    return names.get(kind, "TEXT")


def _default(field: FieldInfo) -> str:
    default = field.default
    if default is None:
        return "unset"
    if isinstance(default, enum.Enum):
        return str(default.value)
    if isinstance(default, bool):
        return "on" if default else "off"
    if default == "":
        return "empty"
    return str(default)


def _settings_options(command: Any) -> Any:
    """One flag per setting: its type or choices, its default, its variable; booleans are --x/--no-x switches.

    Values are checked by the settings themselves (not by click), so a bad flag is
    the same one-line error, exit 2, as a bad variable.
    """
    for name, field in reversed(list(Settings.model_fields.items())):
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} [env: TUCO_{name.upper()}; default: {_default(field)}]"
        if _unwrap(field.annotation) is bool:
            option = click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
        else:
            option = click.option(flag, name, default=None, metavar=_metavar(field.annotation), help=help_text)
        command = option(command)
    return command


@click.command()
@_settings_options
def serve(**options: Any) -> None:
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
