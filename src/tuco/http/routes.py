"""The declared routes of the API and how a path finds one.

Fixed paths are found by one dict lookup; then ``/v1/key/{key}``; then the
reserved names under ``/v1/`` (resources, never keys); last the book's
``/v1/{key}`` alias, which serves every other single segment. A key whose
name is reserved stays reachable at ``/v1/key/{name}``.
"""

from __future__ import annotations

from typing import NamedTuple

from tuco.errors import MethodNotAllowedError
from tuco.http.answers import error_answer
from tuco.http.messages import KEY_ROUTE, Response

__all__ = ["ALIAS", "KEEPALIVE", "KEY", "LEASE", "RESERVED", "ROUTES", "TOKEN", "Route", "match"]

_READ = frozenset((b"GET", b"HEAD"))
_KEY_METHODS = frozenset((b"GET", b"HEAD", b"PUT", b"DELETE"))
_ORDER = (b"GET", b"HEAD", b"PUT", b"POST", b"PATCH", b"DELETE")


class Route(NamedTuple):
    """A path pattern, the methods it answers and the name of the API method that handles it.

    ``handler`` is None for a reserved resource not built yet (answered 404).
    ``not_allowed`` is the 405 answer, with ``Allow`` from ``methods``.
    """

    pattern: str
    methods: frozenset[bytes]
    handler: str | None
    not_allowed: Response


def _route(pattern: str, methods: frozenset[bytes], handler: str | None) -> Route:
    allow = ", ".join(method.decode() for method in _ORDER if method in methods)
    refused = error_answer(MethodNotAllowedError(allow))
    return Route(pattern, methods, handler, refused)


KEY = _route(KEY_ROUTE, _KEY_METHODS, "key")
ALIAS = _route("/v1/{key}", _KEY_METHODS, "key")
LEASE = _route("/v1/leases/{id}", frozenset((b"GET", b"HEAD", b"DELETE")), "lease")
KEEPALIVE = _route("/v1/leases/{id}/keepalive", frozenset((b"POST",)), "keepalive")
TOKEN = _route("/v1/tokens/{id}", frozenset((b"GET", b"HEAD", b"DELETE")), "token")

RESERVED: tuple[str, ...] = ("keys", "watch", "leases", "tokens", "openapi.json")
"""Names under /v1/ that are resources, not keys (a route without a handler would answer 404 naming it)."""

ROUTES: tuple[Route, ...] = (
    _route("/healthz", _READ, "health"),
    _route("/readyz", _READ, "readiness"),
    _route("/metrics", _READ, "metrics"),
    _route("/v1/keys", _READ, "list_keys"),
    _route("/v1/watch", _READ, "watch"),
    _route("/v1/leases", frozenset((b"GET", b"HEAD", b"POST")), "leases"),
    _route("/v1/tokens", frozenset((b"GET", b"HEAD", b"POST")), "tokens"),
    _route("/v1/openapi.json", _READ, "openapi"),
    KEY,
    LEASE,
    KEEPALIVE,
    TOKEN,
    ALIAS,
)
"""Every route, in matching order (the alias last)."""

_FIXED: dict[bytes, Route] = {route.pattern.encode(): route for route in ROUTES if "{" not in route.pattern}


def match(path: bytes) -> tuple[Route | None, bytes]:
    """The route for ``path`` and, for a key route, the raw key segment; ``(None, b"")`` for no route."""
    if path.startswith(b"/v1/key/"):
        segment = path[8:]
        return (KEY, segment) if b"/" not in segment else (None, b"")
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed, b""
    if path.startswith(b"/v1/"):
        segment = path[4:]
        if b"/" not in segment:
            return ALIAS, segment
        if segment.startswith(b"leases/"):  # after the hot routes: a lease's own paths
            rest = segment[7:]
            if rest and b"/" not in rest:
                return LEASE, rest
            id, _, tail = rest.partition(b"/")
            if id and tail == b"keepalive":
                return KEEPALIVE, id
        elif segment.startswith(b"tokens/"):
            rest = segment[7:]
            if rest and b"/" not in rest:
                return TOKEN, rest
    return None, b""
