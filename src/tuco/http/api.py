"""Request to Service to Response: the HTTP API, shared by the native server and ASGI.

``KeyValueAPI.handle`` takes a :class:`~tuco.http.messages.Request` and
returns a response, or an awaitable of one for requests that must wait for
the log. Reads return synchronously, so the native server answers a GET
without creating a task.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote_to_bytes

from tuco.core.events import ABSENT, EXISTS, Event, Precondition
from tuco.core.store import ExpiringEntry, Page
from tuco.errors import (
    HistoryCompactedError,
    InvalidKeyError,
    InvalidPageTokenError,
    InvalidParameterError,
    InvalidPreconditionError,
    InvalidRequestError,
    LeaseNotFoundError,
    LogClosedError,
    LogError,
    NoSuchKeyError,
    PreconditionFailedError,
    TucoError,
)
from tuco.http.answers import (
    JSON,
    OCTET_STREAM,
    PROMETHEUS_TEXT,
    STARTING,
    error_answer,
    error_response,
    json_response,
    log_message,
    refusal,
)
from tuco.http.messages import Request, Response, StreamResponse
from tuco.http.routes import ALIAS, KEY, match
from tuco.observability import Metrics
from tuco.service import Phase, Service

__all__ = ["Answer", "KeyValueAPI", "decode_key", "decode_page_token", "encode_page_token"]

Answer = Response | StreamResponse | Awaitable[Response | StreamResponse]
"""What a handler returns: a response now, or an awaitable of one."""

_NOT_FOUND_PATH = error_response(404, "not_found", "no such resource; keys live under /v1/key/{key}")
_NO_SUCH_KEY = error_response(404, "no_such_key", "no such key")
_NO_SUCH_KEY_BODY = _NO_SUCH_KEY.body
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000
_TOKEN_VERSION = 1
_HEALTHY = json_response(200, {"status": "alive"})
_CONSISTENT_READ_FAILED = "cannot reach the log for a consistent read; see the server's log"
# The /readyz fields of LogStatus.describe() an anonymous client may see (no hosts, users, database names).
_PUBLIC_LOG_FIELDS: tuple[str, ...] = ("backend", "sync", "last_sequence", "lag_events", "lag_seconds", "connected")


def _not_built(name: str) -> Response:
    return error_response(404, "not_found", f"/v1/{name} is a reserved resource that this server does not offer yet")


def public_log_status(described: Mapping[str, object]) -> dict[str, object]:
    """The whitelisted, scalar fields of a log's ``describe()``, for anonymous readers of ``/readyz``."""
    shown: dict[str, object] = {}
    for name in _PUBLIC_LOG_FIELDS:
        value = described.get(name)
        if isinstance(value, bool | int | float) or (name in ("backend", "sync") and isinstance(value, str)):
            shown[name] = value
    return shown


class KeyValueAPI:
    """The REST API of Table 5-1, plus health, limits and JSON errors, over one :class:`Service`."""

    def __init__(self, service: Service, metrics: Metrics | None = None) -> None:
        self.service = service
        self.metrics = metrics if metrics is not None else service.metrics
        self.limits = service.limits
        self._handlers: dict[str, Callable[[Request, bytes], Answer]] = {
            "key": self._key,
            "health": self._health,
            "readiness": self._readiness,
            "metrics": self._metrics,
            "list_keys": self._list_keys,
            "grant": self._grant,
            "lease": self._lease,
            "keepalive": self._keepalive,
        }

    def handle(self, request: Request) -> Answer:
        """Answer one request."""
        path = request.path
        if path.startswith(b"/v1/key/"):  # the hot path, matched as routes.match would; _key checks the methods
            segment = path[8:]
            return self._key(request, segment) if b"/" not in segment else _NOT_FOUND_PATH
        route, segment = match(path)
        if route is ALIAS:
            return self._key(request, segment)
        if route is None:
            return _NOT_FOUND_PATH
        if request.method not in route.methods:
            return route.not_allowed
        handler = self._handlers.get(route.handler) if route.handler is not None else None
        if handler is None:
            return _not_built(route.pattern[4:])
        return handler(request, segment)

    def _health(self, request: Request, segment: bytes) -> Answer:
        return _HEALTHY

    def _metrics(self, request: Request, segment: bytes) -> Answer:
        if self.metrics is None:
            return _NOT_FOUND_PATH
        return Response(200, self.metrics.render(), PROMETHEUS_TEXT)

    def _readiness(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        failure = service.log.failure
        payload: dict[str, object] = {
            "ready": service.ready,
            "phase": service.phase.value,
            "log": public_log_status(service.log.describe()),
        }
        if failure is not None:
            payload["error"] = failure.code
            payload["message"] = log_message(failure.code)
        elif service.phase is Phase.STARTING:
            payload["error"] = "starting"
            payload["message"] = log_message("starting")
        return json_response(200 if service.ready else 503, payload)

    def _key(self, request: Request, segment: bytes) -> Answer:
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
            if request.query and _wants_consistent(request):
                return self._consistent_get(key)
            try:
                entry = service.get(key)
            except NoSuchKeyError:
                return Response(404, _NO_SUCH_KEY_BODY, JSON, (), b"X-Tuco-Revision: %d\r\n" % service.revision)
            except ExpiringEntry as expiring:
                return _expiring_read(expiring, service.revision)
            return Response(
                200,
                entry[0],
                OCTET_STREAM,
                (),
                b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (entry[2], service.store.last_sequence),
            )
        try:
            precondition = _precondition(request)
            if method == b"PUT":
                if request.query:
                    return self._put_with_parameters(request, key, precondition)
                written = service.put(key, request.body, precondition)
                return _answer_when_written(written, _created, "not stored", self._failed)
            written = service.delete(key, precondition)
        except TucoError as exc:
            return _write_refused(exc, "not stored" if method == b"PUT" else "not deleted")
        return _answer_when_written(written, _deleted, "not deleted", self._failed)

    def _read(self, key: str) -> Response:
        service = self.service
        try:
            entry = service.get(key)
        except NoSuchKeyError:
            return Response(404, _NO_SUCH_KEY_BODY, JSON, (), b"X-Tuco-Revision: %d\r\n" % service.revision)
        except ExpiringEntry as expiring:
            return _expiring_read(expiring, service.revision)
        return Response(
            200, entry[0], OCTET_STREAM, (), b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (entry[2], service.revision)
        )

    async def _consistent_get(self, key: str) -> Response:
        try:
            await self.service.catch_up()
        except LogError as exc:
            return refusal(exc, "no consistent read", _CONSISTENT_READ_FAILED)
        return self._read(key)

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
            written = service.put(key, request.body, precondition)
            return _answer_when_written(written, _created, "not stored", self._failed)
        if ttl_raw is not None and lease_raw is not None:
            raise InvalidParameterError("send ttl or lease, not both: a key expires at one deadline")
        if ttl_raw is not None:
            ttl_ms = parse_ttl(ttl_raw, service.limits.max_ttl_ms)
            written = service.put_expiring(key, request.body, precondition, ttl_ms=ttl_ms)
        else:
            lease = _lease_id(lease_raw or b"", InvalidParameterError("lease must be a lease id, as granted"))
            written = service.put_expiring(key, request.body, precondition, lease=lease)
        return self._answer_lease_write(written, self._created_expiring, "not stored")

    def _created_expiring(self, event: Event) -> Response:
        expires_at = event.deadline or self.service.store.expires_at(event.key)
        return Response(
            201,
            b"",
            None,
            (),
            b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\nX-Tuco-Expires-At: %d\r\n'
            % (event.sequence, event.sequence, expires_at),
        )

    def _grant(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        if service.phase is Phase.STARTING:
            return STARTING
        try:
            ttl_ms = _grant_ttl(request.body, service.limits.max_ttl_ms)
            written = service.grant(ttl_ms)
        except TucoError as exc:
            return _write_refused(exc, "no lease granted")
        return self._answer_lease_write(written, _lease_answer(201), "no lease granted")

    def _keepalive(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        if service.phase is Phase.STARTING:
            return STARTING
        try:
            lease = _lease_id(segment, LeaseNotFoundError(0))
            written = service.keepalive(lease)
        except TucoError as exc:
            return _write_refused(exc, "not kept alive")
        return self._answer_lease_write(written, _lease_answer(200), "not kept alive")

    def _lease(self, request: Request, segment: bytes) -> Answer:
        service = self.service
        if service.phase is Phase.STARTING:
            return STARTING
        try:
            lease = _lease_id(segment, LeaseNotFoundError(0))
        except LeaseNotFoundError as exc:
            return error_answer(exc)
        if request.method == b"DELETE":
            return self._revoke(lease)
        found = service.store.leases.get(lease)
        if found is None or found.deadline <= service.log.now_ms():
            return error_answer(LeaseNotFoundError(lease))
        payload = {"id": lease, "ttl": found.ttl / 1000, "expires_at": found.deadline, "keys": sorted(found.keys)}
        return json_response(200, payload, b"X-Tuco-Revision: %d\r\n" % service.revision)

    async def _revoke(self, lease: int) -> Response:
        try:
            event, deleted = await self.service.revoke(lease)
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
        if service.phase is Phase.STARTING:
            return STARTING
        try:
            prefix = _text_param(request, b"prefix")
            limit = _limit(request)
            keys_only = _flag(request, b"keys_only")
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
        return self._list_page(prefix, after, limit, revision, keys_only)

    def _list_page(self, prefix: str, after: str | None, limit: int, revision: int | None, keys_only: bool) -> Response:
        if revision is not None and revision > self.service.revision:
            # Still ahead after catching up: another server's token (or another store's) cannot be served here.
            return error_answer(InvalidPageTokenError("the page token is for a revision this server has not reached"))
        try:
            page = self.service.page(prefix, after=after, limit=limit + 1, revision=revision)
        except HistoryCompactedError as exc:
            body = {"error": exc.code, "message": str(exc), "oldest_revision": exc.oldest}
            return json_response(exc.status, body)
        return _render_page(page, prefix, limit, keys_only)


def _render_page(page: Page, prefix: str, limit: int, keys_only: bool) -> Response:
    """The JSON of one page; ``page`` holds one item more than ``limit`` when more follow."""
    items = page.items
    next_token: str | None = None
    if len(items) > limit:
        items = items[:limit]
        next_token = encode_page_token(page.revision, items[-1].key, prefix)
    b64 = base64.b64encode
    rendered: list[dict[str, object]]
    if keys_only:
        rendered = [
            {"key": key, "create_revision": created, "mod_revision": modified, "version": version}
            for key, _, created, modified, version, _ in items
        ]
    else:
        rendered = [
            {
                "key": key,
                "value": b64(value).decode("ascii"),
                "create_revision": created,
                "mod_revision": modified,
                "version": version,
            }
            for key, value, created, modified, version, _ in items
        ]
    for item, shown in zip(items, rendered, strict=True):
        if item.expires_at:  # only keys with a deadline carry it
            shown["expires_at"] = item.expires_at
    payload = {"revision": page.revision, "items": rendered, "next_page_token": next_token}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(200, body, JSON, (), b"X-Tuco-Revision: %d\r\n" % page.revision)


def encode_page_token(revision: int, last_key: str, prefix: str) -> str:
    """An opaque token for the page after ``last_key`` of the listing of ``prefix`` pinned at ``revision``."""
    raw = json.dumps([_TOKEN_VERSION, revision, last_key, prefix], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_page_token(token: bytes) -> tuple[int, str, str]:
    """``(revision, last key, prefix)`` of a token this server issued; InvalidPageTokenError otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + b"=" * (-len(token) % 4))
        version, revision, last_key, prefix = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidPageTokenError("the page token is not one this server issued") from None
    if (
        version != _TOKEN_VERSION
        or type(revision) is not int
        or revision < 0
        or not isinstance(last_key, str)
        or not isinstance(prefix, str)
    ):
        raise InvalidPageTokenError("the page token is not one this server issued")
    return revision, last_key, prefix


def _text_param(request: Request, name: bytes) -> str:
    raw = request.param(name)
    if raw is None:
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameterError(f"{name.decode()} is not valid UTF-8 after percent-decoding") from None


def _limit(request: Request) -> int:
    raw = request.param(b"limit")
    if raw is None:
        return DEFAULT_PAGE_LIMIT
    if not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_PAGE_LIMIT:
        raise InvalidParameterError(f"limit must be a whole number from 1 to {MAX_PAGE_LIMIT}")
    return int(raw)


def _flag(request: Request, name: bytes) -> bool:
    raw = request.param(name)
    if raw is None:
        return False
    value = raw.lower()
    if value in (b"", b"true", b"1", b"yes"):
        return True
    if value in (b"false", b"0", b"no"):
        return False
    raise InvalidParameterError(f"{name.decode()} must be true or false")


def _precondition(request: Request) -> Precondition | None:
    """The condition of ``If-Match`` / ``If-None-Match``; InvalidPreconditionError for what tuco does not accept."""
    match = request.header(b"if-match")
    none_match = request.header(b"if-none-match")
    if match is None and none_match is None:
        return None
    if match is not None and none_match is not None:
        raise InvalidPreconditionError("send If-Match or If-None-Match, not both")
    name = b"if-match" if match is not None else b"if-none-match"
    if request.header_count(name) > 1:
        raise InvalidPreconditionError(f"send one {name.decode()} header with one entity tag")
    value = (match if match is not None else none_match or b"").strip()
    if none_match is not None:
        if value == b"*":
            return ABSENT
        raise InvalidPreconditionError('If-None-Match takes only "*" (create only if absent)')
    if value == b"*":
        return EXISTS
    if value.startswith(b"W/"):
        raise InvalidPreconditionError("weak entity tags are not accepted: tuco's ETags are strong")
    if b"," in value:
        raise InvalidPreconditionError("a list of entity tags is not accepted: send one")
    if len(value) > 2 and value[0] == value[-1] == 0x22 and value[1:-1].isdigit() and int(value[1:-1]) > 0:
        return Precondition(int(value[1:-1]))
    raise InvalidPreconditionError('If-Match takes "*" or one ETag as tuco sends it: a revision in quotes, "12"')


def _created(event: Event) -> Response:
    return Response(201, b"", None, (), b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (event.sequence, event.sequence))


def _deleted(event: Event) -> Response:
    return Response(200, b"", None, (), b"X-Tuco-Revision: %d\r\n" % event.sequence)


def decode_key(segment: bytes) -> str:
    """Percent-decode one path segment into a key (the length limit is the service's, on writes)."""
    raw = unquote_to_bytes(segment) if b"%" in segment else segment
    if not raw:
        raise InvalidKeyError("the key is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyError("the key is not valid UTF-8 after percent-decoding") from None


def _write_refused(error: TucoError, doing: str) -> Response:
    """A write refused before it reached the log: a client's mistake answered as such, or a log refusal."""
    if isinstance(error, LogError):
        return refusal(error, doing)
    return error_answer(error)


Done = Callable[[Event], Response]
Failed = Callable[[PreconditionFailedError], Response]


def _answer_when_written(written: Awaitable[Event], done: Done, doing: str, failed: Failed) -> Awaitable[Response]:
    """The response to a write, once the log settled it.

    A future from the log is chained to a response future by a callback, which
    keeps the write path free of coroutines and tasks; anything else is awaited.
    """
    if isinstance(written, asyncio.Future):
        answer: asyncio.Future[Response] = written.get_loop().create_future()
        written.add_done_callback(functools.partial(_settle, answer, done, doing, failed))
        return answer
    return _await_written(written, done, doing, failed)


def _settle(
    answer: asyncio.Future[Response], done: Done, doing: str, failed: Failed, written: asyncio.Future[Event]
) -> None:
    if answer.done():
        return
    error = LogClosedError("the write was cancelled") if written.cancelled() else written.exception()
    if error is None:
        answer.set_result(done(written.result()))
    elif isinstance(error, PreconditionFailedError):
        answer.set_result(failed(error))
    elif isinstance(error, TucoError):
        answer.set_result(refusal(error, doing))
    else:
        answer.set_exception(error)


async def _await_written(written: Awaitable[Event], done: Done, doing: str, failed: Failed) -> Response:
    try:
        event = await written
    except PreconditionFailedError as exc:
        return failed(exc)
    except TucoError as exc:
        return refusal(exc, doing)
    return done(event)


_TTL = re.compile(rb"(\d{1,12}(?:\.\d{1,3})?)(ms|s|m|h|d)?")
_TTL_UNITS_MS = {b"ms": 1, b"s": 1000, b"m": 60_000, b"h": 3_600_000, b"d": 86_400_000, None: 1000}
_MAX_LEASE_ID = (1 << 63) - 1
_MAX_GRANT_BODY = 1024


def parse_ttl(raw: bytes, max_ms: int) -> int:
    """Milliseconds of ``30s``, ``500ms``, ``5m``, ``1h``, ``2d`` or a bare number of seconds; InvalidParameterError.

    Must come to at least 1 ms and at most ``max_ms``.
    """
    found = _TTL.fullmatch(raw.strip())
    if found is None:
        raise InvalidParameterError(
            "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"
        )
    number, unit = found.groups()
    ms = round(float(number) * _TTL_UNITS_MS[unit])
    if not 1 <= ms <= max_ms:
        raise InvalidParameterError(f"ttl must be from 1 ms to {max_ms // 1000} s (TUCO_MAX_TTL_SECONDS)")
    return ms


def _grant_ttl(body: bytes, max_ms: int) -> int:
    """The ttl of a grant's JSON body ``{"ttl": 30}`` (seconds, or a duration string like ``"30s"``)."""
    if len(body) > _MAX_GRANT_BODY:
        raise InvalidParameterError('the body must be a small JSON object such as {"ttl": 30}')
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameterError('the body must be JSON such as {"ttl": 30}') from None
    ttl = payload.get("ttl") if isinstance(payload, dict) else None
    if isinstance(ttl, str):
        return parse_ttl(ttl.encode(), max_ms)
    if type(ttl) is int or type(ttl) is float:
        if not ttl == ttl or ttl in (float("inf"), float("-inf")):  # NaN and infinities
            raise InvalidParameterError("ttl must be a finite number of seconds")
        ms = round(ttl * 1000)
        if not 1 <= ms <= max_ms:
            raise InvalidParameterError(f"ttl must be from 1 ms to {max_ms // 1000} s (TUCO_MAX_TTL_SECONDS)")
        return ms
    raise InvalidParameterError('the body must be JSON with a ttl in seconds, such as {"ttl": 30}')


def _lease_id(raw: bytes, error: TucoError) -> int:
    """A lease id as granted (a positive integer); ``error`` for anything else."""
    if not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) <= _MAX_LEASE_ID:
        raise error
    return int(raw)


def _lease_answer(status: int) -> Callable[[Event], Response]:
    def answer(event: Event) -> Response:
        payload = {"id": event.lease, "ttl": event.ttl / 1000, "expires_at": event.deadline, "revision": event.sequence}
        return json_response(status, payload, b"X-Tuco-Revision: %d\r\n" % event.sequence)

    return answer


def _expiring_read(found: ExpiringEntry, revision: int) -> Response:
    """The GET answer for a live key with a deadline: as for any key, plus ``X-Tuco-Expires-At`` (Unix ms)."""
    entry = found.entry
    return Response(
        200,
        entry[0],
        OCTET_STREAM,
        (),
        b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\nX-Tuco-Expires-At: %d\r\n' % (entry[2], revision, found.expires_at),
    )


def _wants_consistent(request: Request) -> bool:
    value = request.param(b"consistent")
    return value is not None and value.lower() in (b"", b"true", b"1", b"yes")
