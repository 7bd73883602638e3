"""MkDocs hooks: pages generated at build time from what the code says, so they cannot drift.

docs/api.md carries ``<!-- openapi -->``: replaced by every operation of openapi.json (the document the
server serves, checked against the route table by tests/http). docs/cli.md carries ``<!-- cli-help -->``:
replaced by ``tuco COMMAND --help`` of every command and subcommand, rendered by click itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("get", "head", "put", "post", "patch", "delete", "options")


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "<!-- openapi -->" in markdown:
        markdown = markdown.replace("<!-- openapi -->", render_openapi(ROOT / "openapi.json"))
    if "<!-- cli-help -->" in markdown:
        markdown = markdown.replace("<!-- cli-help -->", render_cli())
    return markdown


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _response(document: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    ref = answer.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[1]
        resolved: dict[str, Any] = document["components"]["responses"][name]
        return resolved
    return answer


def render_openapi(path: Path) -> str:
    """Every path and method of the OpenAPI document: summary, parameters, responses."""
    document = json.loads(path.read_text(encoding="utf-8"))
    out = [f"Rendered from `openapi.json` ({document['info']['title']} {document['info']['version']}).", ""]
    for route, operations in document["paths"].items():
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            out += [f"### `{method.upper()} {route}`", "", _cell(operation.get("summary", "")), ""]
            if operation.get("description"):
                out += [operation["description"], ""]
            parameters = [*operations.get("parameters", []), *operation.get("parameters", [])]
            if parameters:
                out += ["| Parameter | In | Description |", "| --- | --- | --- |"]
                for parameter in parameters:
                    if "$ref" in parameter:
                        parameter = document["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
                    required = " (required)" if parameter.get("required") else ""
                    out.append(
                        f"| `{parameter['name']}`{required} | {parameter['in']} | "
                        f"{_cell(parameter.get('description', ''))} |"
                    )
                out.append("")
            out += ["| Status | Meaning |", "| --- | --- |"]
            for status, answer in operation.get("responses", {}).items():
                out.append(f"| {status} | {_cell(_response(document, answer).get('description', ''))} |")
            out.append("")
    return "\n".join(out)


def _commands(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Context]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        child = click.Context(command, info_name=name, parent=ctx, max_content_width=100, terminal_width=100)
        found.append((child.command_path, child))
        if isinstance(command, click.Group):
            found += _commands(command, child)
    return found


def render_cli() -> str:
    """``tuco --help``, then each command's and subcommand's help, as click prints it."""
    from tuco.cli import main

    root = click.Context(main, info_name="tuco", max_content_width=100, terminal_width=100)
    out = ["## `tuco`", "", "```text", main.get_help(root), "```", ""]
    for path, ctx in _commands(main, root):
        out += [f"## `{path}`", "", "```text", ctx.command.get_help(ctx), "```", ""]
    return "\n".join(out)
