"""The handler names the routes declare resolve to handler functions, and every handler is named by a route."""

from __future__ import annotations

from tuco.http.handlers import HANDLERS, INLINE
from tuco.http.routes import ROUTES


def _declared() -> set[str]:
    return {operation.handler for route in ROUTES for operation in route.operations.values()}


def test_every_handler_name_in_routes_resolves_to_a_handler() -> None:
    unresolved = sorted(name for name in _declared() if name not in HANDLERS and name not in INLINE)
    assert unresolved == []
    assert all(callable(handler) for handler in HANDLERS.values())


def test_every_handler_is_named_by_a_route() -> None:
    assert sorted(set(HANDLERS) | INLINE) == sorted(_declared())
    assert not set(HANDLERS) & INLINE
