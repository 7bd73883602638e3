"""Handlers by resource: each module answers one resource's routes over the :class:`~tuco.service.Service`.

A route names its handler as ``"module.function"`` (``Operation.handler`` in
:mod:`tuco.http.routes`): the function ``function`` of ``tuco.http.handlers.module``,
found by :func:`resolve` when the API is built. The key routes' name is in
:data:`INLINE`: the dispatch in :mod:`tuco.http.api` answers a plain GET, PUT or
DELETE of a key itself and calls :mod:`~tuco.http.handlers.keys` for the rest.

Adding an endpoint: its route in ``routes.py`` naming ``"module.function"``, and
that function in one module here. Nothing else.
"""

from __future__ import annotations

import importlib
from typing import Final

from tuco.http.handlers._base import Context, Handler

__all__ = ["INLINE", "Context", "Handler", "resolve"]

INLINE: Final[frozenset[str]] = frozenset({"keys.key"})
"""Handler names the dispatch answers inline (the hot path: a call less per request is measurable)."""


def resolve(name: str) -> Handler:
    """The function a route's ``"module.function"`` names; LookupError if there is none."""
    module, dot, function = name.partition(".")
    if not dot or not module.isidentifier() or not function.isidentifier() or module.startswith("_"):
        raise LookupError(f"a handler is named as module.function, not {name!r}")
    found = getattr(importlib.import_module(f"{__name__}.{module}"), function, None)
    if not callable(found):
        raise LookupError(f"no handler {function!r} in {__name__}.{module}")
    handler: Handler = found
    return handler
