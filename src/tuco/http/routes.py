"""The declared routes of the API and how a path finds one.

Fixed paths are found by one dict lookup; then ``/v1/key/{key}``; then the
reserved names under ``/v1/`` (resources, never keys); last the book's
``/v1/{key}`` alias, which serves every other single segment. A key whose
name is reserved stays reachable at ``/v1/key/{name}``.
"""

from __future__ import annotations

from tuco.core.tokens import Permission
from tuco.http._route import Operation, Route, Target, operation, route
from tuco.http.messages import KEY_ROUTE

__all__ = [
    "ALIAS",
    "KEEPALIVE",
    "KEY",
    "LEASE",
    "RESERVED",
    "ROUTES",
    "TOKEN",
    "Operation",
    "Route",
    "Target",
    "match",
]

_READ = Permission.READ
_WRITE = Permission.WRITE
_ADMIN = Permission.ADMIN


def _reads(handler: str, target: Target, permission: Permission | None = _READ, **how: bool) -> dict[bytes, Operation]:
    """GET and HEAD, alike."""
    read = operation(handler, target, permission, **how)
    return {b"GET": read, b"HEAD": read}


_KEY_OPERATIONS = {
    **_reads("key", Target.KEY),
    b"PUT": operation("key", Target.KEY, _WRITE),
    b"DELETE": operation("key", Target.KEY, _WRITE),
}

KEY = route(KEY_ROUTE, _KEY_OPERATIONS)
ALIAS = route("/v1/{key}", _KEY_OPERATIONS)
LEASE = route("/v1/leases/{id}", {**_reads("lease", Target.LEASE), b"DELETE": operation("lease", Target.LEASE, _WRITE)})
KEEPALIVE = route("/v1/leases/{id}/keepalive", {b"POST": operation("keepalive", Target.LEASE, _WRITE)})
TOKEN = route(
    "/v1/tokens/{id}", {**_reads("token", Target.ALL, _ADMIN), b"DELETE": operation("token", Target.ALL, _ADMIN)}
)

RESERVED: tuple[str, ...] = ("keys", "watch", "leases", "tokens", "openapi.json")
"""Names under /v1/ that are resources, not keys (a route without a handler would answer 404 naming it)."""

ROUTES: tuple[Route, ...] = (
    route("/healthz", _reads("health", Target.PUBLIC, None, needs_serving=False)),
    route("/readyz", _reads("readiness", Target.PUBLIC, needs_serving=False)),  # details: read on every key
    route("/metrics", _reads("metrics", Target.METRICS, needs_serving=False)),
    route("/v1/keys", _reads("list_keys", Target.PREFIX)),
    route("/v1/watch", _reads("watch", Target.PREFIX, streams=True)),
    route("/v1/leases", {**_reads("leases", Target.SOME), b"POST": operation("leases", Target.SOME, _WRITE)}),
    route("/v1/tokens", {**_reads("tokens", Target.ALL, _ADMIN), b"POST": operation("tokens", Target.ALL, _ADMIN)}),
    route("/v1/openapi.json", _reads("openapi", Target.AUTHENTICATED, None, needs_serving=False)),
    KEY,
    LEASE,
    KEEPALIVE,
    TOKEN,
    ALIAS,
)
"""Every route, in matching order (the alias last): the one table the front ends, the guard and the document read."""

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
