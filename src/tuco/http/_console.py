"""The web console's routes (files in :mod:`tuco.http.handlers.ui`), declared apart from the API's in routes.py.

Public: the files hold no data; the console gets the data from the API with the user's token.
"""

from __future__ import annotations

from tuco.errors import NotFoundError
from tuco.http._route import Operation, Route, Target, operation, route
from tuco.http._schema import Fails, Schema

__all__ = ["CONSOLE"]

_TEXT: Schema = {"type": "string"}


def _files(handler: str, summary: str, operation_id: str, answers: Schema, **doc: object) -> dict[bytes, Operation]:
    """GET and HEAD of a console file: public, answered while the store starts too."""
    read = operation(
        handler,
        Target.PUBLIC,
        None,
        needs_serving=False,
        summary=summary,
        operation_id="get" + operation_id,
        answers=answers,
        **doc,  # type: ignore[arg-type]  # errors only
    )
    head = read._replace(summary=summary + ", headers only", operation_id="head" + operation_id)
    return {b"GET": read, b"HEAD": head}


_PAGE = {"200": {"description": "The page (CSP default-src 'self')", "content": {"text/html": {"schema": _TEXT}}}}

CONSOLE: tuple[Route, ...] = (
    route("/", _files("ui.index", "The web console's page", "Root", _PAGE)),
    route("/ui", _files("ui.index", "The web console's page", "ConsoleNoSlash", _PAGE)),
    route("/ui/", _files("ui.index", "The web console's page", "Console", _PAGE)),
    route(
        "/ui/{asset}",
        _files(
            "ui.asset",
            "One of the console's files, by its versioned name (cached for a year)",
            "ConsoleAsset",
            {"200": {"description": "The file", "content": {"*/*": {"schema": _TEXT}}}},
            errors=(Fails(NotFoundError, "{code}: no file of that name (an older version)"),),
        ),
        (
            {
                "name": "asset",
                "in": "path",
                "required": True,
                "description": "A versioned name from the page, such as console.<hash>.js.",
                "schema": {"type": "string", "minLength": 1},
            },
        ),
    ),
)
"""The page at /ui/ (and at / and /ui, where people look first); its files under /ui/."""
