"""CORS for the configured origins (``TUCO_CORS_ORIGINS``): every route's answers, and their preflights.

Chosen once when the API is built, as the guard is: with no origin configured
the API's ``handle`` is not wrapped at all, so the request path pays nothing.
Configured, :class:`Cors` sits in front of everything else (the guard too): a
preflight carries no credentials, so it is answered before authentication,
from the route table alone. Every other answer gets the CORS fields for an
allowed ``Origin`` and ``Vary: Origin`` whatever the origin (a shared cache
must not hand one origin's answer to another), refusals made before the API
too (a body over the limit, the body budget spent: :meth:`Cors.refusal`).

A listed origin is echoed with ``Access-Control-Allow-Credentials: true`` (a
page of a trusted origin may send a client certificate); ``*`` allows any
origin without credentials, as the fetch standard requires. Bearer tokens
need no credentials mode: ``Authorization`` is an allowed request header.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from tuco.http.answers import NOT_FOUND_PATH
from tuco.http.messages import Answer, Deferred, Request, Response, StreamResponse
from tuco.http.routes import match

__all__ = ["ALLOWED_HEADERS", "EXPOSED_HEADERS", "MAX_AGE_SECONDS", "Cors"]

ALLOWED_HEADERS = b"Authorization, Content-Type, If-Match, If-None-Match, Last-Event-ID, X-Request-Id"
"""Request headers a page may send: credentials, conditions, a watch's resume point, a request id."""
EXPOSED_HEADERS = b"ETag, X-Tuco-Revision, X-Tuco-Expires-At, X-Tuco-Wait, X-Request-Id, Retry-After"
"""Answer headers a page may read besides the safelisted ones."""
MAX_AGE_SECONDS = 600
"""How long a browser may reuse a preflight's answer (Chromium caps it at two hours)."""

_ORDER = (b"GET", b"HEAD", b"PUT", b"POST", b"PATCH", b"DELETE")
_VARY = (b"Vary", b"Origin")
_PREFLIGHT_VARY = (b"Vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")

Headers = tuple[tuple[bytes, bytes], ...]


class Cors:
    """The CORS layer over an API's ``handle``: ``Cors(origins, api.handle).handle`` is the new ``handle``."""

    __slots__ = ("_any", "_handle", "_origins", "_preflights")

    def __init__(self, origins: frozenset[str], handle: Callable[[Request], Answer]) -> None:
        if not origins:
            raise ValueError("CORS needs at least one origin (with none, leave the API unwrapped)")
        self._any = "*" in origins
        self._origins = frozenset(origin.encode("ascii") for origin in origins if origin != "*")
        self._handle = handle
        self._preflights: dict[tuple[str, bytes], Response] = {}

    def allowed(self, origin: bytes | None) -> Headers:
        """The CORS fields of an answer to a page of ``origin``: none for another origin or none at all."""
        if origin is None:
            return ()
        if origin in self._origins:
            return (
                (b"Access-Control-Allow-Origin", origin),
                (b"Access-Control-Allow-Credentials", b"true"),
                (b"Access-Control-Expose-Headers", EXPOSED_HEADERS),
            )
        if self._any:
            return ((b"Access-Control-Allow-Origin", b"*"), (b"Access-Control-Expose-Headers", EXPOSED_HEADERS))
        return ()

    def fields(self, origin: bytes | None) -> Headers:
        """What an answer (not a preflight's) to a request from ``origin`` adds: :meth:`allowed`, and Vary."""
        fields = self.allowed(origin)
        if self._origins:  # a listed origin is echoed: every answer varies by Origin
            fields = (*fields, _VARY)
        return fields

    def handle(self, request: Request) -> Answer:
        """Answer a preflight from the route table; anything else as the API does, with the CORS fields added."""
        origin = request.header(b"origin")
        if request.method == b"OPTIONS":
            return self._preflight(request, origin)
        answer = self._handle(request)
        fields = self.fields(origin)
        if not fields:
            return answer
        return _with(answer, fields)

    def refusal(self, response: Response, headers: Iterable[tuple[bytes, bytes]]) -> Response:
        """``response``, a refusal made before the request reached the API (413, 503...), with the CORS fields.

        ``headers``: the request's, as far as they were read (a refusal inside the head may come before its
        ``Origin``). A page must be able to read why its request was refused, as it can any other answer.
        """
        origin = next((value for name, value in headers if len(name) == 6 and name.lower() == b"origin"), None)
        fields = self.fields(origin)
        return _response_with(response, fields) if fields else response

    def _preflight(self, request: Request, origin: bytes | None) -> Response:
        """204 with the route's methods, and the CORS fields for an allowed origin; 404 for a path with no route.

        An ``OPTIONS`` that is no preflight (no ``Origin``, or one not allowed) gets the ``Allow`` field alone.
        """
        route, _ = match(request.path)
        if route is None:
            return NOT_FOUND_PATH
        key = (route.pattern, origin or b"")
        cached = self._preflights.get(key)
        if cached is not None:
            return cached
        methods = b", ".join(method for method in _ORDER if method in route.operations)
        fields: Headers = ((b"Allow", methods + b", OPTIONS"),)
        allowed = self.allowed(origin)
        if allowed:
            # The origin (and credentials, for a listed one); the exposed list belongs to real answers.
            fields += tuple(field for field in allowed if field[0] != b"Access-Control-Expose-Headers")
            fields += (
                (b"Access-Control-Allow-Methods", methods),
                (b"Access-Control-Allow-Headers", ALLOWED_HEADERS),
                (b"Access-Control-Max-Age", b"%d" % MAX_AGE_SECONDS),
            )
        if self._origins:
            fields += (_PREFLIGHT_VARY,)
        response = Response(204, b"", None, fields)
        if allowed or origin is None:  # only allowed origins' answers are kept: a stranger cannot grow the dict
            self._preflights[key] = response
        return response


def _with(answer: Answer, fields: Headers) -> Answer:
    """``answer`` with ``fields`` after its own static headers, however it comes (now, deferred, or awaited)."""
    if type(answer) is Response:
        return _response_with(answer, fields)
    if type(answer) is StreamResponse:
        return StreamResponse(answer.status, answer.chunks, answer.content_type, answer.headers + fields)
    if type(answer) is Deferred:
        settle = answer.settle

        def settled(future: Any) -> Response:
            return _response_with(settle(future), fields)

        return Deferred(answer.future, settled)
    if inspect.isawaitable(answer):
        return _later(answer, fields)
    return answer  # pragma: no cover - a handler answers one of the above


def _response_with(response: Response, fields: Headers) -> Response:
    """A copy of ``response`` whose static headers end with ``fields``."""
    return Response(
        response.status,
        response.body,
        response.content_type,
        response.headers + fields,
        response.etag,
        response.revision,
        response.created,
        response.version,
        response.fields,
    )


async def _later(answer: Awaitable[Response | StreamResponse], fields: Headers) -> Response | StreamResponse:
    response = await answer
    with_fields = _with(response, fields)
    if isinstance(with_fields, Response | StreamResponse):
        return with_fields
    raise TypeError(f"an awaited answer is a response, not {with_fields!r}")  # pragma: no cover
