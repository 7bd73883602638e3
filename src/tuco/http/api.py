"""Request to Service to Response: the HTTP API, shared by the native server and ASGI.

``KeyValueAPI.handle`` takes a :class:`~tuco.http.messages.Request` and
returns a response, or an awaitable of one for requests that must wait for
the log. Reads return synchronously, so the native server answers a GET
without creating a task.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from tuco.core.events import Event, Precondition
from tuco.core.store import ExpiringEntry
from tuco.core.tokens import Principal
from tuco.core.watch import Selector
from tuco.errors import (
    HistoryCompactedError,
    InvalidKeyError,
    InvalidPageTokenError,
    InvalidParameterError,
    InvalidRequestError,
    LeaseNotFoundError,
    LogClosedError,
    LogError,
    LogReadOnlyError,
    NoSuchKeyError,
    NotFoundError,
    PreconditionFailedError,
    RevisionAheadError,
    TooManyWatchersError,
    TucoError,
)
from tuco.http import sse
from tuco.http.answers import (
    JSON,
    NO_SUCH_KEY,
    NOT_FOUND_PATH,
    NOT_READY,
    OCTET_STREAM,
    PROMETHEUS_TEXT,
    SHUTTING_DOWN,
    STARTING,
    error_answer,
    json_response,
    log_message,
    refusal,
)
from tuco.http.auth import Guard
from tuco.http.handlers.leases import list_leases
from tuco.http.handlers.listing import render_page
from tuco.http.handlers.tokens import TokenAPI
from tuco.http.handlers.watch import EVENT_STREAM, compacted, cors, revision_ahead, watch_stream
from tuco.http.messages import NO_ROUTE, Answer, Deferred, Request, Response, Settling, StreamResponse
from tuco.http.params import (
    decode_key,
    decode_page_token,
    encode_page_token,
    flag,
    grant_ttl,
    lease_id,
    page_limit,
    parse_ttl,
    precondition_of,
    revision_param,
    text_param,
    wait_timeout,
    wants_consistent,
    watch_params,
)
from tuco.http.routes import ALIAS, KEY, Route, match
from tuco.observability import Metrics
from tuco.service import Phase, Service

__all__ = ["Answer", "KeyValueAPI", "decode_key", "decode_page_token", "encode_page_token", "parse_ttl"]


_NOT_FOUND_PATH = NOT_FOUND_PATH
_NO_SUCH_KEY_BODY = NO_SUCH_KEY.body
_MISSING = NoSuchKeyError.status
_HEALTHY = json_response(200, {"status": "alive"})
_READY = json_response(200, {"ready": True})
_NOT_READY = NOT_READY
_CONSISTENT_READ_FAILED = "cannot reach the log for a consistent read; see the server's log"
_READ_FAILED = "cannot reach the database to read the key; see the server's log"
# The /readyz fields of LogStatus.describe() an anonymous client may see (no hosts, users, database names).
_PUBLIC_LOG_FIELDS: tuple[str, ...] = ("backend", "sync", "last_sequence", "lag_events", "lag_seconds", "connected")


def _not_built(name: str) -> Response:
    return error_answer(NotFoundError(f"/v1/{name} is a reserved resource that this server does not offer yet"))


def public_log_status(described: Mapping[str, object]) -> dict[str, object]:
    """The whitelisted, scalar fields of a log's ``describe()``, for anonymous readers of ``/readyz``."""
    shown: dict[str, object] = {}
    for name in _PUBLIC_LOG_FIELDS:
        value = described.get(name)
        if isinstance(value, bool | int | float) or (name in ("backend", "sync") and isinstance(value, str)):
            shown[name] = value
    return shown


@functools.cache
def _openapi_document() -> Response:
    """The OpenAPI document, built on first use: start-up never pays for it."""
    from tuco.http.openapi import document_bytes

    return Response(200, document_bytes(), JSON)


class KeyValueAPI:
    """The REST API of Table 5-1, plus health, limits and JSON errors, over one :class:`Service`."""

    def __init__(self, service: Service, metrics: Metrics | None = None) -> None:
        self.service = service
        self.metrics = metrics if metrics is not None else service.metrics
        self.limits = service.limits
        self._handlers: dict[str, Callable[[Request, bytes], Answer]] = {
            "health": self._health,
            "readiness": self._readiness,
            "metrics": self._metrics,
            "openapi": self._openapi,
            "list_keys": self._list_keys,
            "watch": self._watch,
            "leases": self._leases,
            "lease": self._lease,
            "keepalive": self._keepalive,
            "tokens": self._token_route,
            "token": self._token_route,
        }
        # A read-through service (TUCO_STATE=cache, serverless) answers misses and listings from the database:
        # its read path is chosen here, once, so a full replica's reads pay nothing for it.
        self._read: Callable[[str, bytes], Response | Awaitable[Response]] = self._read_now
        self._list_page: Callable[[str, str | None, int, int | None, bool], Response | Awaitable[Response]]
        self._list_page = self._list_page_now
        if service.reads_through:
            self._read = self._read_through
            self._list_page = self._list_page_through
        self.tokens = TokenAPI(service)
        self._frames = sse.FrameCache()
        self._guard: Guard | None = None
        if service.access.enabled:  # chosen once: with authentication off, handle is the method itself
            self._guard = Guard(self, self.handle)
            self._verified = service.tokens.verified
            self._now = service.clock
            self.handle = self._handle_guarded  # type: ignore[method-assign]

    def _handle_guarded(self, request: Request) -> Answer:
        """:meth:`handle` with authentication on: a plain GET by a credential verified before is answered here.

        The read path of ``handle`` with the grant check folded in (one dict lookup on the
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
                    b"/" not in segment
                    and segment
                    and service.phase is not Phase.STARTING
                    and (not verified.expires_at or verified.expires_at > self._now())
                ):
                    try:
                        key = segment.decode() if b"%" not in segment else decode_key(segment)
                    except (UnicodeDecodeError, InvalidKeyError):
                        return guard.handle(request)  # type: ignore[union-attr]  # set with the method
                    if not key.startswith(verified.reads):
                        return guard.refuse(request, verified.record)  # type: ignore[union-attr]
                    found = service.find(key)
                    if found is None:
                        return self._read(key, b"")
                    return Response(
                        200,
                        found[0],
                        OCTET_STREAM,
                        (),
                        b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (found[2], service.applied_revision),
                    )
        return guard.handle(request)  # type: ignore[union-attr]

    def _token_route(self, request: Request, segment: bytes) -> Answer:
        """The token routes with authentication off (the guard answers them itself when it is on)."""
        handler = "tokens" if request.path == b"/v1/tokens" else "token"
        return self.tokens.answer(request, handler, segment, None)

    def readiness_summary(self) -> Response:
        """What an anonymous client learns of readiness with authentication on: ready or not, nothing more."""
        ready = self.service.ready
        return _READY if ready else _NOT_READY

    def revoke_answer(self, lease: int, allowed: Callable[[str], bool], by: Principal) -> Answer:
        """DELETE /v1/leases/{id} by ``by``, whose keys must each pass ``allowed`` (checked after catching up)."""
        if self.service.phase is Phase.STARTING:
            return STARTING
        return self._revoke(lease, allowed, by)

    def handle(self, request: Request) -> Answer:
        """Answer one request.

        The key routes are answered right here rather than in a handler method:
        they are nearly every request, and a call less per request is measurable.
        """
        path = request.path
        if path.startswith(b"/v1/key/"):  # the hot path, matched as routes.match would
            segment = path[8:]
            if b"/" in segment:
                request.route = NO_ROUTE
                return _NOT_FOUND_PATH
        else:
            route, segment = match(path)
            request.route = route.pattern if route is not None else NO_ROUTE
            if route is not ALIAS:
                return self._resource(route, request, segment)
        method = request.method
        read = method == b"GET" or method == b"HEAD"
        if not read and method != b"PUT" and method != b"DELETE":
            return KEY.not_allowed
        service = self.service
        if service.phase is Phase.STARTING:
            return STARTING
        try:
            key = segment.decode() if segment and b"%" not in segment else decode_key(segment)
        except UnicodeDecodeError:
            return error_answer(InvalidKeyError("the key is not valid UTF-8 after percent-decoding"))
        except InvalidKeyError as exc:
            return error_answer(exc)
        if read:
            if request.query:
                if request.param(b"wait_revision") is not None:
                    return self._long_poll(request, key)
                if wants_consistent(request):
                    return self._consistent_get(key)
            found = service.find(key)
            if found is None:  # absent, or a key with a deadline
                return self._read(key, b"")
            return Response(
                200,
                found[0],
                OCTET_STREAM,
                (),
                b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (found[2], service.applied_revision),
            )
        try:
            precondition = precondition_of(request) if request.conditional else None
            if method == b"PUT":
                if request.query:
                    return self._put_with_parameters(request, key, precondition)
                written = service.put(key, request.body, precondition)
                settle = self._settle_put
            else:
                written = service.delete(key, precondition)
                settle = self._settle_delete
        except TucoError as exc:
            return _write_refused(exc, "not stored" if method == b"PUT" else "not deleted")
        if hasattr(written, "add_done_callback"):  # the common case (a Written), inline: one call less per write
            return Deferred(written, settle)  # type: ignore[arg-type]  # settles as it has add_done_callback
        return _answer_when_written(written, settle)

    def _resource(self, route: Route | None, request: Request, segment: bytes) -> Answer:
        """Every route but the keys': its declared operation for the method (or 405), the phase gate, the handler."""
        if route is None:
            return _NOT_FOUND_PATH
        operation = route.operations.get(request.method)
        if operation is None:
            return route.not_allowed
        handler = self._handlers.get(operation.handler)
        if handler is None:
            return _not_built(route.pattern[4:])
        if operation.needs_serving and self.service.phase is Phase.STARTING:  # the phase gate, as declared
            return STARTING
        return handler(request, segment)

    def _health(self, request: Request, segment: bytes) -> Answer:
        return _HEALTHY

    def _metrics(self, request: Request, segment: bytes) -> Answer:
        if self.metrics is None:
            return _NOT_FOUND_PATH
        return Response(200, self.metrics.render(), PROMETHEUS_TEXT)

    def _openapi(self, request: Request, segment: bytes) -> Answer:
        return _openapi_document()

    def _readiness(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        failure = service.log_failure
        payload: dict[str, object] = {
            "ready": service.ready,
            "phase": service.phase.value,
            "log": public_log_status(service.log_description()),
        }
        if failure is not None:
            payload["error"] = failure.code
            payload["message"] = log_message(failure.code)
            if isinstance(failure, LogReadOnlyError):
                payload["missing_privileges"] = list(failure.missing)
        elif service.phase is Phase.STARTING:
            payload["error"] = "starting"
            payload["message"] = log_message("starting")
        store = service.store_status()
        if store is not None:  # full or not, the replica stays ready: reads and deletes are served
            payload["store"] = store
        return json_response(200 if service.ready else _NOT_READY.status, payload)

    def _read_now(self, key: str, extra: bytes = b"") -> Response:
        """A read of ``key`` with every case: absent (404), with a deadline, or plain; ``extra`` header lines."""
        service = self.service
        try:
            entry = service.get(key)
        except NoSuchKeyError:
            return Response(
                _MISSING, _NO_SUCH_KEY_BODY, JSON, (), b"X-Tuco-Revision: %d\r\n%b" % (service.revision, extra)
            )
        except ExpiringEntry as expiring:
            return _expiring_read(expiring, service.revision, extra)
        return Response(
            200,
            entry[0],
            OCTET_STREAM,
            (),
            b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n%b' % (entry[2], service.revision, extra),
        )

    async def _read_through(self, key: str, extra: bytes = b"", consistent: bool = False) -> Response:
        """:meth:`_read_now` for a read-through service: a miss (or a consistent read) asks the database."""
        service = self.service
        try:
            found = await (service.read_consistent(key) if consistent else service.fetch(key))
        except LogError as exc:
            if consistent:
                return refusal(exc, "no consistent read", _CONSISTENT_READ_FAILED)
            return refusal(exc, "no read", _READ_FAILED)
        entry = found.entry
        if entry is None:
            return Response(
                _MISSING, _NO_SUCH_KEY_BODY, JSON, (), b"X-Tuco-Revision: %d\r\n%b" % (found.revision, extra)
            )
        if found.expires_at:
            return _expiring_read(ExpiringEntry(entry, found.expires_at), found.revision, extra)
        return Response(
            200,
            entry[0],
            OCTET_STREAM,
            (),
            b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n%b' % (entry[2], found.revision, extra),
        )

    async def _consistent_get(self, key: str) -> Response:
        if self.service.reads_through:  # the database's row is the newest there is: no catching up first
            return await self._read_through(key, b"", consistent=True)
        try:
            await self.service.catch_up()
        except LogError as exc:
            return refusal(exc, "no consistent read", _CONSISTENT_READ_FAILED)
        return self._read_now(key)

    def _settle_put(self, written: Settling) -> Response:
        """201 with the new ETag, or why the write was not stored."""
        try:
            sequence = written.result()[0]
        except (Exception, asyncio.CancelledError):
            return self._not_written(written, "not stored")
        return Response(201, b"", None, (), b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (sequence, sequence))

    def _settle_delete(self, written: Settling) -> Response:
        """200 with the new revision, or why the delete was not recorded."""
        try:
            sequence = written.result()[0]
        except (Exception, asyncio.CancelledError):
            return self._not_written(written, "not deleted")
        return Response(200, b"", None, (), b"X-Tuco-Revision: %d\r\n" % sequence)

    def _not_written(self, written: Settling, doing: str) -> Response:
        if written.cancelled():
            return refusal(LogClosedError("the write was cancelled"), doing)
        error = written.exception()
        if isinstance(error, PreconditionFailedError):
            return self._failed(error)
        if isinstance(error, TucoError):
            return refusal(error, doing)
        raise RuntimeError("the log failed a write with an unexpected error") from error  # answered 500, logged

    def _failed(self, error: PreconditionFailedError) -> Response:
        """412 with the key's current ETag (none when it is absent) and the store's revision (RFC 9110 13.1)."""
        revision = self.service.revision
        if error.current:
            extra = b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (error.current, revision)
        else:
            extra = b"X-Tuco-Revision: %d\r\n" % revision
        return error_answer(error, extra)

    # -- expiring keys and leases -------------------------------------------------

    def _put_with_parameters(self, request: Request, key: str, precondition: Precondition | None) -> Answer:
        """A PUT with a query: ``?ttl=`` (30s, 500ms, 5m, 1h, 2d; a bare number is seconds) or ``?lease=ID``."""
        service = self.service
        ttl_raw = request.param(b"ttl")
        lease_raw = request.param(b"lease")
        if ttl_raw is None and lease_raw is None:
            return _answer_when_written(service.put(key, request.body, precondition), self._settle_put)
        if ttl_raw is not None and lease_raw is not None:
            raise InvalidParameterError("send ttl or lease, not both: a key expires at one deadline")
        if ttl_raw is not None:
            ttl_ms = parse_ttl(ttl_raw, service.limits.max_ttl_ms)
            written = service.put_expiring(key, request.body, precondition, ttl_ms=ttl_ms)
        else:
            lease = lease_id(lease_raw or b"", InvalidParameterError("lease must be a lease id, as granted"))
            written = service.put_expiring(key, request.body, precondition, lease=lease, by=request.principal)
        return self._answer_lease_write(written, self._created_expiring, "not stored")

    def _created_expiring(self, event: Event) -> Response:
        expires_at = event.deadline or self.service.expires_at(event.key)
        return Response(
            201,
            b"",
            None,
            (),
            b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\nX-Tuco-Expires-At: %d\r\n'
            % (event.sequence, event.sequence, expires_at),
        )

    def _leases(self, request: Request, segment: bytes) -> Answer:
        """POST /v1/leases grants one; GET lists the caller's own (see :mod:`tuco.http.handlers.leases`)."""
        if request.method == b"POST":
            return self._grant(request, segment)
        try:
            return list_leases(self.service, request)
        except InvalidRequestError as exc:
            return error_answer(exc)

    def _grant(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        try:
            ttl_ms = grant_ttl(request.body, service.limits.max_ttl_ms)
            written = service.grant(ttl_ms, request.principal)
        except TucoError as exc:
            return _write_refused(exc, "no lease granted")
        return self._answer_lease_write(written, _lease_answer(201), "no lease granted")

    def _keepalive(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        try:
            lease = lease_id(segment, LeaseNotFoundError(0))
            written = service.keepalive(lease, request.principal)
        except TucoError as exc:
            return _write_refused(exc, "not kept alive")
        return self._answer_lease_write(written, _lease_answer(200), "not kept alive")

    def _lease(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        try:
            lease = lease_id(segment, LeaseNotFoundError(0))
        except LeaseNotFoundError as exc:
            return error_answer(exc)
        if request.method == b"DELETE":
            return self._revoke(lease, None, request.principal)
        found = service.owned_lease(lease, request.principal)
        if found is None or found.deadline <= service.now_ms():
            return error_answer(LeaseNotFoundError(lease))
        payload = {"id": lease, "ttl": found.ttl / 1000, "expires_at": found.deadline, "keys": sorted(found.keys)}
        return json_response(200, payload, b"X-Tuco-Revision: %d\r\n" % service.revision)

    async def _revoke(
        self, lease: int, allowed: Callable[[str], bool] | None = None, by: Principal | None = None
    ) -> Response:
        try:
            event, deleted = await self.service.revoke(lease, allowed, by)
        except LogError as exc:
            return refusal(exc, "not revoked")
        except TucoError as exc:
            return error_answer(exc)
        payload = {"id": lease, "revision": event.sequence, "deleted_keys": deleted}
        return json_response(200, payload, b"X-Tuco-Revision: %d\r\n" % event.sequence)

    async def _answer_lease_write(self, written: Awaitable[Event], done: Done, doing: str) -> Response:
        try:
            event = await written
        except PreconditionFailedError as exc:
            return self._failed(exc)
        except LogError as exc:
            return refusal(exc, doing)
        except TucoError as exc:  # no such lease, a limit
            return error_answer(exc)
        return done(event)

    # -- listing ------------------------------------------------------------------

    def _list_keys(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        try:
            prefix = text_param(request, b"prefix")
            limit = page_limit(request)
            keys_only = flag(request, b"keys_only")
            token = request.param(b"page_token")
            if token:
                revision, after, token_prefix = decode_page_token(token)
                if token_prefix != prefix:
                    raise InvalidPageTokenError("the page token belongs to a listing of another prefix")
            else:
                revision, after = None, None
        except InvalidRequestError as exc:
            return error_answer(exc)
        if revision is not None and revision > service.revision:
            # Another replica served the earlier page: catch up to its revision first.
            return self._list_after_catch_up(prefix, after, limit, revision, keys_only)
        return self._list_page(prefix, after, limit, revision, keys_only)

    async def _list_after_catch_up(
        self, prefix: str, after: str | None, limit: int, revision: int, keys_only: bool
    ) -> Response:
        try:
            await self.service.catch_up()
        except LogError as exc:
            return refusal(exc, "no listing", "cannot reach the log to serve that revision; see the server's log")
        return await _settled(self._list_page(prefix, after, limit, revision, keys_only))

    def _list_page_now(
        self, prefix: str, after: str | None, limit: int, revision: int | None, keys_only: bool
    ) -> Response:
        if revision is not None and revision > self.service.revision:
            # Still ahead after catching up: another server's token (or another store's) cannot be served here.
            return error_answer(InvalidPageTokenError("the page token is for a revision this server has not reached"))
        try:
            page = self.service.page(prefix, after=after, limit=limit + 1, revision=revision)
        except HistoryCompactedError as exc:
            body = {"error": exc.code, "message": str(exc), "oldest_revision": exc.oldest}
            return json_response(exc.status, body)
        return render_page(page, prefix, limit, keys_only)

    async def _list_page_through(
        self, prefix: str, after: str | None, limit: int, revision: int | None, keys_only: bool
    ) -> Response:
        """:meth:`_list_page_now` for a read-through service: the page is read from the database."""
        if revision is not None and revision > self.service.revision:
            return error_answer(InvalidPageTokenError("the page token is for a revision this server has not reached"))
        try:
            page = await self.service.page_through(prefix, after=after, limit=limit + 1, revision=revision)
        except HistoryCompactedError as exc:
            return compacted(exc)
        except LogError as exc:
            return refusal(exc, "no listing", "cannot reach the log to list keys; see the server's log")
        return render_page(page, prefix, limit, keys_only)

    # -- watching: GET /v1/watch (Server-Sent Events) and long polls ----------------

    def _watch(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        if service.phase is Phase.STOPPING:
            return _WATCH_STOPPING
        try:
            selector, after = watch_params(request, service.revision)
        except InvalidRequestError as exc:
            return error_answer(exc)
        headers = sse.HEADERS + cors(request, service.watch_settings.allow_origins)
        if after > service.revision:
            # Another replica's revision, or one this store never reached (it was restored from a backup).
            return self._watch_after_catch_up(request.method == b"HEAD", selector, after, headers, request.principal)
        return self._open_watch(request.method == b"HEAD", selector, after, headers, request.principal)

    def _open_watch(
        self,
        head: bool,
        selector: Selector,
        after: int,
        headers: tuple[tuple[bytes, bytes], ...],
        by: Principal | None,
    ) -> Response | StreamResponse:
        service = self.service
        if after > service.revision:
            return revision_ahead(RevisionAheadError(after, service.revision))
        if head:
            # Says whether a GET would stream, without opening a watch.
            if after < service.oldest_revision and not service.reads_back_history:
                return compacted(HistoryCompactedError(service.oldest_revision))
            return Response(200, b"", EVENT_STREAM, headers)
        try:
            watch = service.watch(selector, after, by)
        except HistoryCompactedError as exc:
            return compacted(exc)
        except RevisionAheadError as exc:
            return revision_ahead(exc)
        except TooManyWatchersError as exc:
            return error_answer(exc, b"Retry-After: 1\r\n")
        return StreamResponse(200, watch_stream(watch, self._frames), EVENT_STREAM, headers)

    async def _watch_after_catch_up(
        self,
        head: bool,
        selector: Selector,
        after: int,
        headers: tuple[tuple[bytes, bytes], ...],
        by: Principal | None,
    ) -> Response | StreamResponse:
        """A resume point past the store: apply what the log has first; still ahead, it is refused (409)."""
        try:
            await self.service.catch_up()
        except LogError as exc:
            return refusal(exc, "no watch", "cannot reach the log to tell whether that revision exists")
        return self._open_watch(head, selector, after, headers, by)

    def _long_poll(self, request: Request, key: str) -> Answer:
        """GET /v1/key/{k}?wait_revision=N&timeout=T: the key once it changed at N or later, or at the timeout."""
        try:
            revision = revision_param(request, b"wait_revision")
            timeout = wait_timeout(request.param(b"timeout"))
        except InvalidRequestError as exc:
            return error_answer(exc)
        service = self.service
        if service.phase is not Phase.STOPPING and revision - 1 > service.revision:
            return self._answer_after_wait(key, revision, timeout, catch_up=True)
        if service.phase is Phase.STOPPING or service.mod_revision(key) >= revision:
            return self._read(key, b"X-Tuco-Wait: changed\r\n")
        return self._answer_after_wait(key, revision, timeout)

    async def _answer_after_wait(self, key: str, revision: int, timeout: float, *, catch_up: bool = False) -> Response:
        if catch_up:  # a wait_revision past the store: apply what the log has first; still ahead, 409
            try:
                await self.service.catch_up()
            except LogError as exc:
                return refusal(exc, "no wait", "cannot reach the log to tell whether that revision exists")
            if self.service.mod_revision(key) >= revision:
                return await _settled(self._read(key, b"X-Tuco-Wait: changed\r\n"))
        try:
            await self.service.wait_for_change(key, revision, timeout)
        except RevisionAheadError as exc:
            return revision_ahead(exc)
        changed = self.service.changed_since(key, revision) and self.service.phase is not Phase.STOPPING
        return await _settled(self._read(key, b"X-Tuco-Wait: changed\r\n" if changed else b"X-Tuco-Wait: timeout\r\n"))


_WATCH_STOPPING = SHUTTING_DOWN


def _write_refused(error: TucoError, doing: str) -> Response:
    """A write refused before it reached the log: a client's mistake answered as such, or a log refusal."""
    if isinstance(error, LogError):
        return refusal(error, doing)
    return error_answer(error)


Done = Callable[[Event], Response]


def _answer_when_written(written: Awaitable[Event], settle: Callable[[Settling], Response]) -> Deferred:
    """The answer to a write: ``settle`` runs on its future once the log decided.

    A log that waits for room first hands back a coroutine (and any awaitable that is not settled
    through a callback becomes one): it becomes a task, still one Deferred.
    """
    if hasattr(written, "add_done_callback"):  # a future, or the group commit's Written
        return Deferred(cast(Settling, written), settle)
    return Deferred(asyncio.ensure_future(written), settle)


def _lease_answer(status: int) -> Callable[[Event], Response]:
    def answer(event: Event) -> Response:
        payload = {"id": event.lease, "ttl": event.ttl / 1000, "expires_at": event.deadline, "revision": event.sequence}
        return json_response(status, payload, b"X-Tuco-Revision: %d\r\n" % event.sequence)

    return answer


def _expiring_read(found: ExpiringEntry, revision: int, extra: bytes = b"") -> Response:
    """The GET answer for a live key with a deadline: as for any key, plus ``X-Tuco-Expires-At`` (Unix ms)."""
    entry = found.entry
    return Response(
        200,
        entry[0],
        OCTET_STREAM,
        (),
        b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\nX-Tuco-Expires-At: %d\r\n%b'
        % (entry[2], revision, found.expires_at, extra),
    )


async def _settled(answer: Response | Awaitable[Response]) -> Response:
    """The response of an answer that is one now or once awaited (a read-through service's reads)."""
    return answer if isinstance(answer, Response) else await answer
