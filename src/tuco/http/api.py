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
from urllib.parse import unquote_to_bytes

from tuco.core.events import Event
from tuco.errors import InvalidKeyError, LogClosedError, LogError, NoSuchKeyError, TucoError
from tuco.http.answers import (
    INTERNAL_ERROR,
    OCTET_STREAM,
    PROMETHEUS_TEXT,
    RETRY_SOON,
    SERVER_BUSY,
    STARTING,
    error_answer,
    error_response,
    json_response,
    log_message,
    refusal,
    value_too_large,
)
from tuco.http.messages import Request, Response, StreamResponse
from tuco.http.routes import match
from tuco.observability import Metrics
from tuco.service import Limits, Phase, Service

__all__ = [
    "INTERNAL_ERROR",
    "RETRY_SOON",
    "SERVER_BUSY",
    "STARTING",
    "Answer",
    "KeyValueAPI",
    "Limits",
    "Phase",
    "Response",
    "error_response",
    "refusal",
    "value_too_large",
]

Answer = Response | StreamResponse | Awaitable[Response | StreamResponse]
"""What a handler returns: a response now, or an awaitable of one."""

_CREATED = Response(201)
_DELETED = Response(200)
_NOT_FOUND_PATH = error_response(404, "not_found", "no such resource; keys live under /v1/key/{key}")
_NO_SUCH_KEY = error_response(404, "no_such_key", "no such key")
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
        }

    def handle(self, request: Request) -> Answer:
        """Answer one request."""
        route, segment = match(request.path)
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
        service = self.service
        if service.phase is Phase.STARTING:
            return STARTING
        method = request.method
        try:
            key = decode_key(segment)
        except InvalidKeyError as exc:
            return error_answer(exc)
        if method == b"GET" or method == b"HEAD":
            if request.query and _wants_consistent(request):
                return self._consistent_get(key)
            try:
                return Response(200, service.get(key)[0], OCTET_STREAM)
            except NoSuchKeyError:
                return _NO_SUCH_KEY
        if method == b"PUT":
            try:
                written = service.put(key, request.body)
            except TucoError as exc:
                return _write_refused(exc, "not stored")
            return _answer_when_written(written, _CREATED, "not stored")
        try:
            written = service.delete(key)
        except TucoError as exc:
            return _write_refused(exc, "not deleted")
        return _answer_when_written(written, _DELETED, "not deleted")

    async def _consistent_get(self, key: str) -> Response:
        try:
            entry = await self.service.consistent_get(key)
        except LogError as exc:
            return refusal(exc, "no consistent read", _CONSISTENT_READ_FAILED)
        except NoSuchKeyError:
            return _NO_SUCH_KEY
        return Response(200, entry[0], OCTET_STREAM)


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


def _answer_when_written(written: Awaitable[Event], done: Response, failed: str) -> Awaitable[Response]:
    """The response to a write, once the log settled it.

    A future from the log is chained to a response future by a callback, which
    keeps the write path free of coroutines and tasks; anything else is awaited.
    """
    if isinstance(written, asyncio.Future):
        answer: asyncio.Future[Response] = written.get_loop().create_future()
        written.add_done_callback(functools.partial(_settle, answer, done, failed))
        return answer
    return _await_written(written, done, failed)


def _settle(answer: asyncio.Future[Response], done: Response, failed: str, written: asyncio.Future[Event]) -> None:
    if answer.done():
        return
    error = LogClosedError("the write was cancelled") if written.cancelled() else written.exception()
    if error is None:
        answer.set_result(done)
    elif isinstance(error, TucoError):
        answer.set_result(refusal(error, failed))
    else:
        answer.set_exception(error)


async def _await_written(written: Awaitable[Event], done: Response, failed: str) -> Response:
    try:
        await written
    except TucoError as exc:
        return refusal(exc, failed)
    return done


def _wants_consistent(request: Request) -> bool:
    value = request.param(b"consistent")
    return value is not None and value.lower() in (b"", b"true", b"1", b"yes")
