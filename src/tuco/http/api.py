"""Request to Service to Response: the dispatch of the HTTP API, shared by the native server, ASGI and serverless.

``KeyValueAPI(service).handle`` takes a :class:`~tuco.http.messages.Request` and
returns a response, or an awaitable of one for requests that must wait for
the log. Reads return synchronously, so the native server answers a GET
without creating a task.

The dispatch matches the route, then (authentication on) the
:class:`~tuco.http.auth.Guard` authenticates and authorizes from the route's
declaration, then the phase gate (``needs_serving``), then the handler: the
function the declared operation names (``"module.function"`` in
:mod:`tuco.http.handlers`, resolved once when the API is built). A plain
GET, PUT or DELETE of a key is answered right here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final

from tuco.core.origin import Reason
from tuco.errors import InvalidKeyError, NotFoundError, TucoError
from tuco.http._fast import plain_segment as _plain_segment
from tuco.http.answers import NOT_FOUND_PATH, OCTET_STREAM, STARTING, error_answer
from tuco.http.audit import ANONYMOUS_ORIGIN, origin
from tuco.http.auth import Guard
from tuco.http.cors import Cors
from tuco.http.handlers import INLINE, Context, resolve
from tuco.http.handlers._writes import answer_when_written, write_refused
from tuco.http.handlers.keys import consistent_get, long_poll, put_with_parameters, read_at, read_now, read_through
from tuco.http.handlers.listing import list_page_now, list_page_through
from tuco.http.handlers.status import readiness_summary
from tuco.http.messages import NO_ROUTE, Answer, Deferred, Headers, Request, Response
from tuco.http.params import (
    KEY_NOT_UTF8,
    decode_key,
    decode_page_token,
    encode_page_token,
    parse_ttl,
    precondition_of,
    wants_consistent,
)
from tuco.http.routes import ALIAS, KEY, ROUTES, Route, match
from tuco.observability import Metrics
from tuco.service import Phase, Service

__all__ = ["Answer", "KeyValueAPI", "decode_key", "decode_page_token", "encode_page_token", "parse_ttl"]


_NOT_FOUND_PATH: Final = NOT_FOUND_PATH
_DOTS: Final = (b".", b"..")  # refused by decode_key, as segments proxies resolve away
# A module constant: reading an Enum member off its class costs a descriptor call.
_PHASE_STARTING: Final = Phase.STARTING


def _not_built(name: str) -> Response:
    return error_answer(NotFoundError(f"/v1/{name} is a reserved resource that this server does not offer yet"))


class KeyValueAPI:
    """The REST API of Table 5-1, plus health, limits and JSON errors, over one :class:`Service`."""

    def __init__(self, service: Service, metrics: Metrics | None = None) -> None:
        self.service = service
        self.metrics = metrics if metrics is not None else service.metrics
        self.limits = service.limits
        # A read-through service (TUCO_STATE=cache, serverless) answers misses and listings from the database:
        # its read path is chosen here, once, so a full replica's reads pay nothing for it.
        through = service.reads_through
        self._read: Callable[[str, Headers], Response | Awaitable[Response]] = functools.partial(
            read_through if through else read_now, service
        )
        context = self.context = Context(
            service,
            self.metrics,
            self._read,
            functools.partial(list_page_through if through else list_page_now, service),
        )
        self._handlers: dict[str, Callable[[Request, bytes], Answer]] = {
            operation.handler: functools.partial(resolve(operation.handler), context)
            for route in ROUTES
            for operation in route.operations.values()
            if operation.handler not in INLINE
        }
        writes = context.writes
        self._settle_put = writes.settle_put
        self._settle_delete = writes.settle_delete
        self._guard: Guard | None = None
        # The entry point, chosen once: with authentication off and no CORS origin it is answer_open itself, so
        # the request path pays for neither. An attribute, not a rebound method: a compiled class allows that.
        self.handle: Callable[[Request], Answer] = self.answer_open
        if service.access.enabled:
            self._guard = Guard(self, self.dispatch)
            self._verified = service.tokens.verified
            self._now = service.clock
            self.handle = self.answer_guarded
        origins = service.watch_settings.allow_origins
        self.cors: Cors | None = None
        """The CORS layer ``handle`` goes through, when origins are configured (front ends add its fields to
        the refusals they make themselves)."""
        if origins:
            self.cors = Cors(origins, self.handle)
            self.handle = self.cors.handle

    def answer_guarded(self, request: Request) -> Answer:
        """``handle`` with authentication on: a plain GET by a credential verified before is answered here.

        The read path of :meth:`answer_open` with the grant check folded in (one dict lookup on the
        credential, one ``str.startswith`` over its read prefixes), so an authenticated GET
        costs a few hundred instructions more than an open one; everything else goes
        through the :class:`~tuco.http.auth.Guard`.
        """
        guard = self._guard
        authorization = request.authorization
        path = request.path
        if authorization is not None and path.startswith(b"/v1/key/") and not request.query:
            method = request.method
            verified = self._verified.get(authorization)
            if verified is not None and (method == b"GET" or method == b"HEAD"):
                segment = path[8:]
                service = self.service
                if (
                    segment.find(b"/") < 0
                    and segment
                    and service.phase is not _PHASE_STARTING
                    and (not verified.expires_at or verified.expires_at > self._now())
                ):
                    try:
                        key = segment.decode() if segment.find(b"%") < 0 else decode_key(segment)
                    except (UnicodeDecodeError, InvalidKeyError):
                        return guard.handle(request)  # type: ignore[union-attr]  # set with the method
                    if not key.startswith(verified.reads):
                        return guard.refuse(request, verified.record, key)  # type: ignore[union-attr]
                    request.caller = verified.record
                    return self._key(request, segment)
        return guard.handle(request)  # type: ignore[union-attr]

    def readiness_summary(self) -> Response:
        """What an anonymous client learns of readiness with authentication on: ready or not, nothing more."""
        return readiness_summary(self.service)

    def answer_open(self, request: Request) -> Answer:
        """``handle`` with authentication off: match the route, then :meth:`dispatch` (with it on, the guard
        matches, authenticates, authorizes and then calls :meth:`dispatch` the same way)."""
        path = request.path
        if path.startswith(b"/v1/key/"):  # the hot path, matched as routes.match would
            return self._key(request, path[8:])
        route, segment = match(path)
        request.route = route.pattern if route is not None else NO_ROUTE
        return self.dispatch(request, route, segment)

    def dispatch(self, request: Request, route: Route | None, segment: bytes) -> Answer:
        """A matched request, authorized when authentication is on: 404, or 405 from the route, the phase gate
        as declared, then the handler the operation names."""
        if route is None:
            return _NOT_FOUND_PATH
        if route is KEY or route is ALIAS:
            return self._key(request, segment)
        operation = route.operations.get(request.method)
        if operation is None:
            return route.not_allowed
        handler = self._handlers.get(operation.handler)
        if handler is None:
            return _not_built(route.pattern[4:])
        if operation.needs_serving and self.service.phase is _PHASE_STARTING:  # the phase gate, as declared
            return STARTING
        return handler(request, segment)

    def _key(self, request: Request, segment: bytes) -> Answer:
        """The key routes, answered here rather than in a handler module: nearly every request is one, and a
        call less per request is measurable. A GET with no parameters and every plain PUT and DELETE stay here."""
        # bytes.find, not ``in``: on Python 3.11, ``b"%" in segment`` first tries its operand as an int, raising and
        # clearing a TypeError inside (about 1,800 instructions, several per request: bench/instructions.py).
        method = request.method
        read = method == b"GET" or method == b"HEAD"
        if not read and method != b"PUT" and method != b"DELETE":
            return KEY.not_allowed
        service = self.service
        if service.phase is _PHASE_STARTING:
            return STARTING
        try:
            check = _plain_segment  # the same test in C, in the compiled build
            plain: bytes | bool
            if check is None:
                plain = segment and segment.find(b"%") < 0 and segment.find(b"/") < 0 and segment not in _DOTS
            else:
                plain = check(segment)
            key = segment.decode() if plain else decode_key(segment)
        except UnicodeDecodeError:
            return error_answer(InvalidKeyError(KEY_NOT_UTF8))
        except InvalidKeyError as exc:
            return error_answer(exc)
        if read:
            if request.query:
                if request.param(b"wait_revision") is not None:
                    return long_poll(self.context, request, key)
                if wants_consistent(request):
                    return consistent_get(self.context, key)
                if request.param(b"revision") is not None:
                    return read_at(self.context, request, key)
            found = service.find(key)
            if found is None:  # absent, or a key with a deadline
                return self._read(key, ())
            return Response(200, found[0], OCTET_STREAM, (), found[2], service.applied_revision, found[1], found[3])
        try:
            precondition = precondition_of(request) if request.conditional else None
            if method == b"PUT":
                if request.query:
                    return put_with_parameters(self.context, request, key, precondition)
                by = ANONYMOUS_ORIGIN if request.caller is None else origin(request)  # no call without a caller
                written = service.put(key, request.body, precondition, by)
                settle = self._settle_put
            else:
                written = service.delete(key, precondition, origin(request, Reason.DELETED))
                settle = self._settle_delete
        except TucoError as exc:
            return write_refused(exc, "not stored" if method == b"PUT" else "not deleted")
        if hasattr(written, "add_done_callback"):  # the common case (a Written), inline: one call less per write
            return Deferred(written, settle)  # type: ignore[arg-type]  # settles as it has add_done_callback
        return answer_when_written(written, settle)
