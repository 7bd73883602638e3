"""Handlers by resource: each module answers one resource's routes over the :class:`~tuco.service.Service`.

:data:`HANDLERS` resolves the handler names the routes declare (``Operation.handler`` in
:mod:`tuco.http.routes`) to the functions answering them; the key routes' name is in
:data:`INLINE`: the dispatch in :mod:`tuco.http.api` answers a plain GET, PUT or DELETE of a key
itself and calls :mod:`~tuco.http.handlers.keys` for the rest. Adding an endpoint: a route in
``routes.py``, its handler in one module here, its name in this table.
"""

from __future__ import annotations

from tuco.http.handlers import leases, listing, status, tokens, watch
from tuco.http.handlers._base import Context, Handler

__all__ = ["HANDLERS", "INLINE", "Context", "Handler"]

INLINE: frozenset[str] = frozenset({"key"})
"""Handler names the dispatch answers inline (the hot path: a call less per request is measurable)."""

HANDLERS: dict[str, Handler] = {
    "health": status.health,
    "readiness": status.readiness,
    "metrics": status.metrics,
    "openapi": status.openapi,
    "list_keys": listing.list_keys,
    "watch": watch.watch,
    "leases": leases.leases,
    "lease": leases.lease,
    "keepalive": leases.keepalive,
    "tokens": tokens.tokens,
    "token": tokens.token,
}
"""Every handler name declared in ``ROUTES`` but the inline ones, and the function answering it."""
