"""Authentication and authorization in front of the API (the token routes are in ``handlers/tokens.py``).

With ``TUCO_AUTH=token`` the API's ``handle`` ends in :meth:`Guard.handle`
(after the API's own shortcut for a plain GET by a credential verified before),
chosen once when the API is built: with authentication off the request path has
no check at all. The guard finds the credential (``Authorization: Bearer``, else
the TLS client certificate's identity), matches the route once, reads what it
declares it needs and either hands the matched request to the API's
``dispatch`` (with ``request.caller`` set) or answers ``401``/``403`` itself,
with one ``request_denied`` audit line. It never answers a route itself. What
each route needs:

- ``/healthz``: nothing, ever. ``/readyz``: nothing for ``{"ready": ...}``; read
  on every key ("" prefix) for the details. ``/metrics``: the ``metrics`` permission
  (a scraper's token: no key), which read on "" implies (or ``TUCO_METRICS_PUBLIC=true``).
- a key: read for GET and HEAD, write for PUT and DELETE, by the key's prefix.
- ``/v1/keys`` and ``/v1/watch``: read on the whole prefix asked for (or the
  key watched), so a listing or a watch never shows a key outside the grants.
- leases: a grant needs write on some prefix; reading one, or the list of
  one's own (``GET /v1/leases``), needs read on some prefix, keeping it alive
  or revoking it write on some prefix, and every use
  (attaching a key too) needs the lease to be the principal's own or the
  principal to be an admin: the guard hands its principal on with the request
  and the service decides, after catching up for a lease it does not know yet
  (to anyone else the lease does not exist: 404). A revoke deletes the lease's
  keys, so it also needs write on each of them, checked by the service after
  catching up, just before the deletes.
- ``/v1/tokens``: admin on "" (every key).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import structlog

from tuco.core.tokens import (
    MAX_VERIFIED,
    Grant,
    Permission,
    TokenRecord,
    Verified,
    allows,
    allows_any,
    digest,
    is_bearer,
    parse_bearer,
    parse_token,
)
from tuco.errors import ForbiddenError, TucoError
from tuco.http.answers import CERTIFICATE_EXPIRED, INVALID_TOKEN, NOT_BEARER, UNAUTHORIZED, error_answer
from tuco.http.audit import audit_denied
from tuco.http.messages import NO_ROUTE, Answer, Deferred, Request, Response, StreamResponse
from tuco.http.params import decode_key
from tuco.http.routes import KEY, Route, Target, match

if TYPE_CHECKING:
    from tuco.service import Service

__all__ = ["BOOTSTRAP_ID", "Guard", "Guarded"]

_audit = structlog.get_logger("tuco.audit")

BOOTSTRAP_ID = "bootstrap"
"""The id audit lines give the bootstrap token (TUCO_BOOTSTRAP_TOKEN)."""
_BOOTSTRAP = TokenRecord(BOOTSTRAP_ID, "the bootstrap token (TUCO_BOOTSTRAP_TOKEN)", (Grant("", Permission.ADMIN),))
_UNAUTHORIZED = UNAUTHORIZED
_INVALID_TOKEN = INVALID_TOKEN
_GET = b"GET"
_HEAD = b"HEAD"
_PUT = b"PUT"
_DELETE = b"DELETE"
_METRICS = Permission.METRICS
_READ = Permission.READ
_WRITE = Permission.WRITE
_ADMIN = Permission.ADMIN
_WRITES = {_GET: False, _HEAD: False, _PUT: True, _DELETE: True}


class Guarded(Protocol):
    """What the guard needs of the API it stands in front of (the API is not imported: no cycle)."""

    service: Service

    def readiness_summary(self) -> Response: ...


class Guard:
    """The authenticating ``handle`` of a :class:`~tuco.http.api.KeyValueAPI` (see the module docstring)."""

    __slots__ = ("_api", "_bootstrap", "_dispatch", "_metrics_public", "_now", "_service", "_tokens", "_verified")

    def __init__(self, api: Guarded, dispatch: Callable[[Request, Route | None, bytes], Answer]) -> None:
        service = api.service
        self._api = api
        self._dispatch = dispatch
        self._service = service
        self._tokens = service.tokens
        self._verified = self._tokens.verified
        self._now = service.clock
        self._bootstrap = service.access.bootstrap_sha256
        self._metrics_public = service.access.metrics_public

    def handle(self, request: Request) -> Answer:
        """Authenticate, authorize by route, then answer as the API does (or 401 / 403).

        A key request by a credential verified before is one dict lookup and one
        ``str.startswith`` over the grant's prefixes.
        """
        path = request.path
        if path.startswith(b"/v1/key/"):  # the hot path first, as KeyValueAPI.handle matches it
            segment = path[8:]
            authorization = request.authorization
            verified = self._verified.get(authorization) if authorization is not None else None
            if verified is not None and (not verified.expires_at or verified.expires_at > self._now()):
                writes = _WRITES.get(request.method)
                if writes is None:
                    return self._dispatch(request, KEY, segment)  # 405
                try:
                    key = segment.decode() if segment.find(b"%") < 0 else _decoded(segment)
                except (UnicodeDecodeError, TucoError):
                    return self._dispatch(request, KEY, segment)  # 400
                if not key.startswith(verified.writes if writes else verified.reads):
                    return self._forbidden(request, verified.record, _WRITE if writes else _READ, key)
                request.caller = verified.record
                if request.query:  # a PUT ?lease= acts on a lease (its owner is the service's); a GET may wait
                    request.principal = verified.principal
                    if not writes:
                        return self._when_answered(self._dispatch(request, KEY, segment), request, verified.record)
                return self._dispatch(request, KEY, segment)
            route: Route | None = KEY
        else:
            route, segment = match(path)
            request.route = route.pattern if route is not None else NO_ROUTE
            if route is not None and route.target is Target.PUBLIC and route.first.permission is None:
                return self._dispatch(request, route, segment)  # /healthz: nothing to authenticate
        principal = self._authenticate(request)
        if route is not None and route.target is Target.KEY:
            if type(principal) is str:
                return self._unauthorized(request, principal)
            operation = route.operations.get(request.method)
            if operation is None or operation.permission is None:
                return self._dispatch(request, route, segment)  # 405
            need = operation.permission
            try:
                key = segment.decode() if segment.find(b"%") < 0 else _decoded(segment)
            except (UnicodeDecodeError, TucoError):
                return self._dispatch(request, route, segment)  # 400: no key, nothing to authorize
            record: TokenRecord = principal  # type: ignore[assignment]  # str ruled out above
            if not allows(record.grants, key, need):
                return self._forbidden(request, record, need, key)
            request.caller = record
            if request.query:  # a PUT ?lease= acts on a lease (its owner is the service's); a GET may wait
                request.principal = record.principal
                if need is _READ:
                    return self._when_answered(self._dispatch(request, route, segment), request, record)
            return self._dispatch(request, route, segment)
        return self._resource(request, route, segment, principal)

    def _authenticate(self, request: Request) -> TokenRecord | str:
        """The credential's record, or why there is none: missing, malformed, unknown, revoked or expired."""
        header = request.authorization
        if header is None:
            peer = request.peer
            if peer is not None:
                if not peer.identity:
                    return "ambiguous_certificate"
                found = self._tokens.for_cert(peer.identity, self._now())
                if found is not None:
                    return found
            return "missing"
        credential = parse_bearer(header)
        if credential is None:
            return "malformed"
        parsed = parse_token(credential)
        if parsed is not None:
            id, secret = parsed
            record = self._tokens.get(id)
            if record is not None and record.sha256:
                if not hmac.compare_digest(record.sha256, digest(secret)):
                    return "unknown"
                if record.expires_at and record.expires_at <= self._now():
                    return "expired"
                self._remember(header, record)
                return record
            if id in self._tokens.revoked:
                return "revoked"
        if self._bootstrap and hmac.compare_digest(self._bootstrap, digest(credential)):
            self._remember(header, _BOOTSTRAP)
            return _BOOTSTRAP
        return "unknown" if parsed is not None else "malformed"

    def _lapsed(self, record: TokenRecord, request: Request) -> str | None:
        """Why a credential verified for ``request`` is no longer honoured (``revoked``, ``expired``); None if it is.

        A certificate's grants replaced by new ones count as revoked; a client certificate past its notAfter
        ends whatever its connection carries.
        """
        now = self._now()
        peer = request.peer
        if peer is not None and now >= peer.not_after * 1000:
            return "certificate_expired"
        if record is _BOOTSTRAP:
            return None
        if record.expired(now):
            return "expired"
        if self._tokens.get(record.id) is not record:
            return "revoked"
        if record.cert and self._tokens.for_cert(record.cert, now) is not record:
            return "revoked"
        return None

    def _when_answered(self, answer: Answer, request: Request, record: TokenRecord) -> Answer:
        """A read's answer, authorized again when it is ready if it had to wait (a long poll)."""
        if type(answer) is Response:
            return answer
        return self._authorized_again(answer, request, record)  # type: ignore[arg-type]  # a read: no Deferred

    async def _authorized_again(
        self, answer: Awaitable[Response | StreamResponse], request: Request, record: TokenRecord
    ) -> Response | StreamResponse:
        """The awaited answer if the credential is still honoured now, else the 401 a request now would get."""
        response = await answer
        reason = self._lapsed(record, request)
        if reason is not None:
            return self._unauthorized(request, reason, record.id)
        return response

    def _while_valid(self, answer: Answer, record: TokenRecord, request: Request) -> Answer:
        """A stream's answer that ends once its credential lapses (the bootstrap token's never does, but for a
        certificate's expiry); any other answer as it is."""
        if record is _BOOTSTRAP and request.peer is None:
            return answer
        if type(answer) is StreamResponse:
            answer.chunks = _WhileValid(answer.chunks, record, request, self._lapsed)
            return answer
        if type(answer) is Response or type(answer) is Deferred:
            return answer
        return self._stream_when_ready(answer, record, request)  # type: ignore[arg-type]  # an awaitable answer

    async def _stream_when_ready(
        self, answer: Awaitable[Response | StreamResponse], record: TokenRecord, request: Request
    ) -> Response | StreamResponse:
        """An answer that had to wait (a watch resumed after catching up) and is then a stream: kept checked."""
        ready = await answer
        if type(ready) is StreamResponse:
            ready.chunks = _WhileValid(ready.chunks, record, request, self._lapsed)
        return ready

    def _remember(self, header: bytes, record: TokenRecord) -> None:
        verified = self._verified
        if len(verified) >= MAX_VERIFIED:
            verified.clear()
        verified[header] = Verified.of(record)

    def _resource(self, request: Request, route: Route | None, segment: bytes, principal: TokenRecord | str) -> Answer:
        """Authorize a request to any route but the keys' by what the route declares."""
        target = route.target if route is not None else None
        if target is Target.PUBLIC:  # /readyz: anyone gets ready or not; the details need the declared permission
            need = route.first.permission or _READ  # type: ignore[union-attr]  # target set from the route
            if type(principal) is not str and allows(principal.grants, "", need):  # type: ignore[union-attr]
                return self._dispatch(request, route, segment)
            return self._api.readiness_summary()
        if target is Target.METRICS and self._metrics_public:
            return self._dispatch(request, route, segment)
        if type(principal) is str:
            return self._unauthorized(request, principal)
        record: TokenRecord = principal  # type: ignore[assignment]
        request.caller = record  # what the route needs is checked below, before the handler sees it
        grants = record.grants
        if target is Target.PREFIX:
            try:
                prefix = _watched(request)
            except (UnicodeDecodeError, TucoError):
                return self._dispatch(request, route, segment)  # 400
            if not allows(grants, prefix, _READ):
                return self._forbidden(request, record, _READ, prefix, prefixed=True)
            request.principal = record.principal  # a watch counts against its principal's share
            return self._while_valid(self._dispatch(request, route, segment), record, request)
        if target is Target.METRICS:
            if not allows(grants, "", _METRICS):
                return self._forbidden(request, record, _METRICS)
            return self._dispatch(request, route, segment)
        if target is Target.ALL:
            if not allows(grants, "", _ADMIN):
                return self._forbidden(request, record, _ADMIN, "", prefixed=True)
            return self._while_valid(self._dispatch(request, route, segment), record, request)  # a snapshot streams
        if target is Target.LEASE or target is Target.SOME:
            return self._lease(request, route, segment, record)  # type: ignore[arg-type]  # set with the target
        return self._dispatch(request, route, segment)  # 404s, 405s, the document: authenticated, nothing to check

    def _lease(self, request: Request, route: Route, segment: bytes, record: TokenRecord) -> Answer:
        """A lease route: the permission here; the owner in the service (the principal goes with the request)."""
        operation = route.operations.get(request.method)
        if operation is not None and operation.permission is not None:
            need = operation.permission
        else:  # a 405, authorized as a read or a write would be
            need = _READ if request.method in (_GET, _HEAD) else _WRITE
        grants = record.grants
        if not allows_any(grants, need):
            return self._forbidden(request, record, need, None)
        request.principal = record.principal
        return self._dispatch(request, route, segment)

    def _unauthorized(self, request: Request, reason: str, token: str | None = None) -> Response:
        if token is None and reason in ("revoked", "expired", "unknown"):
            token = _token_id(request)
        self._audit_denied(request, token, reason)
        if reason == "certificate_expired":
            return CERTIFICATE_EXPIRED
        header = request.authorization
        if reason == "malformed" and header is not None and not is_bearer(header):
            return NOT_BEARER  # a bare token, or Basic: say how to send it (nothing about any token)
        return _UNAUTHORIZED if reason in ("missing", "ambiguous_certificate") else _INVALID_TOKEN

    def refuse(self, request: Request, record: TokenRecord, key: str) -> Response:
        """403 for a valid credential without read on ``key``, with its audit line."""
        return self._forbidden(request, record, _READ, key)

    def _forbidden(
        self, request: Request, record: TokenRecord, need: Permission, on: str | None = "", *, prefixed: bool = False
    ) -> Response:
        """403 naming the grant the request needs and the ones the token has (``on``: a key, a prefix
        with ``prefixed``, None for any prefix; the metrics permission is on nothing)."""
        self._audit_denied(request, record.id, "no_grant")
        return error_answer(ForbiddenError(forbidden_message(record.grants, need, on, prefixed)))

    def _audit_denied(self, request: Request, token: str | None, reason: str) -> None:
        audit_denied(request, token, reason)


class _WhileValid:
    """A watch stream that ends once its credential is revoked or expires (checked at each chunk it sends).

    An idle stream sends a heartbeat every TUCO_WATCH_HEARTBEAT_SECONDS, so that bounds how long it outlives
    a revocation. An iterator class rather than an async generator, which mypyc cannot compile; it awaits
    nothing inside ``except`` or ``finally`` (a compiled coroutine suspended there keeps a stale exception).
    """

    __slots__ = ("_chunks", "_closed", "_lapsed", "_record", "_request")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        record: TokenRecord,
        request: Request,
        lapsed: Callable[[TokenRecord, Request], str | None],
    ) -> None:
        self._chunks = chunks
        self._record = record
        self._request = request
        self._lapsed = lapsed
        self._closed = False

    def __aiter__(self) -> _WhileValid:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        failure: BaseException | None = None
        try:
            chunk = await self._chunks.__anext__()
        except BaseException as exc:  # the stream ended, failed or was cancelled: it is closed, then that goes on
            failure = exc
        if failure is not None:
            await self.aclose()
            raise failure
        record = self._record
        reason = self._lapsed(record, self._request)
        if reason is not None:
            _audit.info("watch_ended", token_id=record.id, cert=record.cert or None, reason=reason)
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        """Close the stream underneath (once)."""
        if self._closed:
            return
        self._closed = True
        closing = getattr(self._chunks, "aclose", None)
        if closing is not None:
            await closing()


def _token_id(request: Request) -> str | None:
    """The id part of the request's bearer token (never its secret), for an audit line."""
    header = request.header(b"authorization")
    credential = parse_bearer(header) if header is not None else None
    parsed = parse_token(credential) if credential is not None else None
    return parsed[0] if parsed is not None else None


_SHOWN_GRANTS = 8
_SHOWN_CHARS = 80


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _grant_words(grant: Grant) -> str:
    if grant.permission is _METRICS:
        return "metrics"
    return f"{grant.permission.label} on " + (f"{_shown(grant.prefix)}*" if grant.prefix else "every key")


def forbidden_message(grants: tuple[Grant, ...], need: Permission, on: str | None, prefixed: bool = False) -> str:
    """What a 403 says: the permission needed and on what, then what the token has (so the fix is plain)."""
    if need is _METRICS:
        wanted = 'metrics (a grant {"permission": "metrics"}, or read on every key)'
    elif on is None:
        wanted = f"{need.label} on some prefix"
    elif not on and prefixed:
        wanted = f'{need.label} on every key (prefix "")'
    else:
        wanted = f"{need.label} on {_shown(on)}" + ("*" if prefixed else "")
    has = ", ".join(_grant_words(grant) for grant in grants[:_SHOWN_GRANTS]) or "no grants"
    if len(grants) > _SHOWN_GRANTS:
        has += f" and {len(grants) - _SHOWN_GRANTS} more"
    return f"the request needs {wanted}; the token has {has}. Ask an admin for a token with that grant"


def _decoded(segment: bytes) -> str:
    return decode_key(segment)


def _watched(request: Request) -> str:
    """The prefix a listing or watch asks for: ``prefix``, or a watched ``key`` (the whole key is the prefix)."""
    raw = request.param(b"key")
    if raw is None:
        raw = request.param(b"prefix")
    return (raw or b"").decode("utf-8")
