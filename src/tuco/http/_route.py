"""What a route declares: its operations by method, each with its handler, the permission it needs and on what.

The guard authorizes from these declarations (it knows no handler names), the
API dispatches by them, and the 405 answer is built once from the methods.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NamedTuple

from tuco.core.tokens import Permission
from tuco.errors import MethodNotAllowedError, TucoError
from tuco.http._schema import EMPTY, Fails, Schema
from tuco.http.answers import error_answer
from tuco.http.messages import Response

__all__ = ["Operation", "Route", "Target", "operation", "route"]

_ORDER = (b"GET", b"HEAD", b"PUT", b"POST", b"PATCH", b"DELETE")


class Target(enum.Enum):
    """What an operation's permission applies to."""

    PUBLIC = "public"
    """Nothing: anyone (``/healthz``; ``/readyz``, whose details need read on every key)."""
    AUTHENTICATED = "authenticated"
    """Any valid credential, no grant (the OpenAPI document)."""
    KEY = "key"
    """The key in the path."""
    PREFIX = "prefix"
    """The prefix (or the key) the query asks for: a listing, a watch."""
    LEASE = "lease"
    """A lease in the path: a grant of the permission on some prefix, and the lease the principal's own."""
    SOME = "some"
    """Any grant of the permission at all (granting a lease, listing one's own)."""
    ALL = "all"
    """Every key (admin on "": the tokens)."""
    METRICS = "metrics"
    """The metrics permission (read on every key implies it), unless TUCO_METRICS_PUBLIC."""


class Operation(NamedTuple):
    """One method of a route: the API handler's name, the permission and its target, and how it runs."""

    handler: str
    target: Target
    permission: Permission | None = None
    needs_serving: bool = True
    """Answered 503 ``starting`` until replay is done."""
    streams: bool = False
    """Answers a stream, re-authorized for as long as it runs."""
    summary: str = ""
    """The document's words for it."""
    operation_id: str = ""
    parameters: tuple[Schema, ...] = ()
    """Its query and header parameters, as the document describes them."""
    body: Schema | None = None
    """The request body it reads (the document's requestBody)."""
    answers: Mapping[str, Schema] = EMPTY
    """Its answers that are not errors, by status (the success ones, a readiness 503)."""
    errors: tuple[Fails, ...] = ()
    """The errors it answers besides those any request can get: each status and code from its class."""


class Route(NamedTuple):
    """A path pattern and its operations by method; ``not_allowed`` is the 405 with ``Allow`` from them."""

    pattern: str
    operations: Mapping[bytes, Operation]
    not_allowed: Response
    parameters: tuple[Schema, ...] = ()
    """The parameters in its path, as the document describes them."""

    @property
    def methods(self) -> frozenset[bytes]:
        return frozenset(self.operations)

    @property
    def target(self) -> Target:
        """What the route's permission applies to (every operation of a route shares one)."""
        return next(iter(self.operations.values())).target

    @property
    def first(self) -> Operation:
        """The route's first operation, for what its operations share."""
        return next(iter(self.operations.values()))

    @property
    def handler(self) -> str:
        """The handler's name (every operation of a route shares one today)."""
        return next(iter(self.operations.values())).handler


def operation(
    handler: str,
    target: Target,
    permission: Permission | None = None,
    *,
    needs_serving: bool = True,
    streams: bool = False,
    summary: str = "",
    operation_id: str = "",
    parameters: tuple[Schema, ...] = (),
    body: Schema | None = None,
    answers: Mapping[str, Schema] = EMPTY,
    errors: tuple[Fails | type[TucoError], ...] = (),
) -> Operation:
    """An operation; an error given by its class alone is described by its code."""
    fails = tuple(error if isinstance(error, Fails) else Fails(error) for error in errors)
    return Operation(
        handler, target, permission, needs_serving, streams, summary, operation_id, parameters, body, answers, fails
    )


def route(pattern: str, operations: Mapping[bytes, Operation], parameters: tuple[Schema, ...] = ()) -> Route:
    """A route, with its 405 answer built once."""
    allow = ", ".join(method.decode() for method in _ORDER if method in operations)
    return Route(pattern, dict(operations), error_answer(MethodNotAllowedError(allow)), parameters)
