"""Transport-independent request handling, shared by the native server and ASGI.

``KeyValueAPI.handle`` takes the method, the raw request target and the body
and returns a :class:`Response`, or an awaitable of one for requests that must
wait for the log. Reads return synchronously, so the native server answers a
GET without creating a task.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import structlog

from tuco.core.events import Event
from tuco.core.store import Store
from tuco.errors import (
    InvalidKeyError,
    KeyTooLongError,
    LogClosedError,
    LogError,
    LogFailedError,
    NoSuchKeyError,
    TucoError,
)
from tuco.observability import Metrics
from tuco.ports import TransactionLog

__all__ = [
    "ALLOWED_METHODS",
    "INTERNAL_ERROR",
    "RETRY_SOON",
    "SERVER_BUSY",
    "STARTING",
    "KeyValueAPI",
    "Limits",
    "Phase",
    "Response",
    "error_response",
    "refusal",
]

_logger = structlog.get_logger("tuco.http")

ALLOWED_METHODS = "GET, HEAD, PUT, DELETE"
OCTET_STREAM = b"application/octet-stream"
JSON = b"application/json"
PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"


class Response:
    """Status, body and the few headers tuco ever sends."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: bytes | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:40]!r})"


def error_response(status: int, code: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    """A JSON error body ``{"error": code, "message": message}``."""
    body = json.dumps({"error": code, "message": message}).encode()
    return Response(status, body, JSON, headers)


def json_response(status: int, payload: object) -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), JSON)


# One table from error class to HTTP status; the most specific class wins.
_STATUS_BY_ERROR: tuple[tuple[type[TucoError], int], ...] = (
    (NoSuchKeyError, 404),
    (KeyTooLongError, 414),
    (InvalidKeyError, 400),
    (LogClosedError, 503),
    (LogFailedError, 503),
    (LogError, 503),
)


def status_for(error: TucoError) -> int:
    """The HTTP status for an error tuco raised."""
    for cls, status in _STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


class Phase(enum.Enum):
    """Where the process is in its life; drives ``/readyz`` and key requests."""

    STARTING = "starting"
    SERVING = "serving"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes a client may send."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 1 << 20
    max_buffered_bytes: int = 64 << 20
    """Bodies being received, all requests together (the ASGI front end; the native server has its own)."""


_CREATED = Response(201)
_DELETED = Response(200)
_METHOD_NOT_ALLOWED = error_response(
    405, "method_not_allowed", f"allowed methods: {ALLOWED_METHODS}", ((b"Allow", ALLOWED_METHODS.encode()),)
)
_HEALTH_METHOD_NOT_ALLOWED = error_response(
    405, "method_not_allowed", "allowed methods: GET, HEAD", ((b"Allow", b"GET, HEAD"),)
)
_NOT_FOUND_PATH = error_response(404, "not_found", "no such resource; keys live under /v1/key/{key}")
_NO_SUCH_KEY = error_response(404, "no_such_key", "no such key")
STARTING = error_response(503, "starting", "replaying the transaction log; try again shortly")
INTERNAL_ERROR = error_response(500, "internal_error", "the server failed to handle the request; see its log")
RETRY_SOON = ((b"Retry-After", b"1"),)
SERVER_BUSY = error_response(
    503, "server_busy", "the server is receiving too many request bodies at once; retry shortly", RETRY_SOON
)
_HEALTHY = json_response(200, {"status": "alive"})

# What a client is told when the log refuses a request: tuco's own words, never the
# OS's or the driver's (paths, hosts, errno text); those go to the server's log.
_LOG_MESSAGES: dict[str, str] = {
    "log_failed": "the transaction log failed and takes no more writes; see the server's log",
    "log_unavailable": "the database is out of reach; the write may have been stored, and retrying it is safe",
    "log_closed": "the server is shutting down and takes no more writes",
    "starting": "replaying the transaction log; try again shortly",
}
_LOG_MESSAGE_OTHER = "the transaction log cannot take requests; see the server's log"
_CONSISTENT_READ_FAILED = "cannot reach the log for a consistent read; see the server's log"
# The /readyz fields of LogStatus.describe() an anonymous client may see (no hosts, users, database names).
_PUBLIC_LOG_FIELDS: tuple[str, ...] = ("backend", "sync", "last_sequence", "lag_events", "lag_seconds", "connected")


def log_message(code: str) -> str:
    """tuco's fixed message for a log error code."""
    return _LOG_MESSAGES.get(code, _LOG_MESSAGE_OTHER)


class _Refusals:
    """The canned answers to refused requests, and a log line per distinct cause.

    A failed log refuses every later write with the same exception, so it is
    logged once (with its detailed text), not once per request.
    """

    __slots__ = ("_answers", "_last")

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], Response] = {}
        self._last: BaseException | None = None

    def answer(self, error: TucoError, doing: str, message: str | None = None) -> Response:
        if error is not self._last:
            self._last = error
            _logger.warning("request_refused", error=error.code, doing=doing, detail=str(error))
        key = (error.code, doing)
        response = self._answers.get(key)
        if response is None:
            text = f"{doing}: {message or log_message(error.code)}"
            response = self._answers[key] = error_response(status_for(error), error.code, text)
        return response


_refusals = _Refusals()


def refusal(error: TucoError, doing: str) -> Response:
    """The fixed answer to a request the log refused (``doing``: "not stored", "not deleted"...)."""
    return _refusals.answer(error, doing)


def public_log_status(described: Mapping[str, object]) -> dict[str, object]:
    """The whitelisted, scalar fields of a log's ``describe()``, for anonymous readers of ``/readyz``."""
    shown: dict[str, object] = {}
    for name in _PUBLIC_LOG_FIELDS:
        value = described.get(name)
        if isinstance(value, bool | int | float) or (name in ("backend", "sync") and isinstance(value, str)):
            shown[name] = value
    return shown


class KeyValueAPI:
    """The REST API of Table 5-1, plus health, limits and JSON errors."""

    def __init__(
        self, store: Store, log: TransactionLog, limits: Limits | None = None, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.log = log
        self.limits = limits or Limits()
        self.metrics = metrics
        self.phase = Phase.STARTING

    @property
    def ready(self) -> bool:
        """Replay finished and the log takes writes."""
        return self.phase is Phase.SERVING and self.log.failure is None

    def handle(self, method: bytes, target: bytes, body: bytes) -> Response | Awaitable[Response]:
        """Answer one request; ``target`` is the raw path with its query string."""
        if b"?" in target:
            path, _, query = target.partition(b"?")
        else:
            path, query = target, b""
        if path.startswith(b"/v1/"):
            # /v1/key/{key}, or the book's /v1/{key}; a key is exactly one segment.
            segment = path[8:] if path.startswith(b"/v1/key/") else path[4:]
            if b"/" not in segment:
                return self._handle_key(method, segment, query, body)
            return _NOT_FOUND_PATH
        if path == b"/healthz":
            return self._health(method, _HEALTHY)
        if path == b"/readyz":
            return self._health(method, self._readiness())
        if path == b"/metrics" and self.metrics is not None:
            return self._health(method, Response(200, self.metrics.render(), PROMETHEUS_TEXT))
        return _NOT_FOUND_PATH

    def _health(self, method: bytes, response: Response) -> Response:
        if method in (b"GET", b"HEAD"):
            return response
        return _HEALTH_METHOD_NOT_ALLOWED

    def _readiness(self) -> Response:
        failure = self.log.failure
        payload: dict[str, object] = {
            "ready": self.ready,
            "phase": self.phase.value,
            "log": public_log_status(self.log.describe()),
        }
        if failure is not None:
            payload["error"] = failure.code
            payload["message"] = log_message(failure.code)
        elif self.phase is Phase.STARTING:
            payload["error"] = "starting"
            payload["message"] = log_message("starting")
        return json_response(200 if self.ready else 503, payload)

    def _handle_key(self, method: bytes, segment: bytes, query: bytes, body: bytes) -> Response | Awaitable[Response]:
        read = method == b"GET" or method == b"HEAD"
        if not read and method != b"PUT" and method != b"DELETE":
            return _METHOD_NOT_ALLOWED
        if self.phase is Phase.STARTING:
            return STARTING
        try:
            key = self.decode_key(segment)
        except InvalidKeyError as exc:
            return error_response(status_for(exc), exc.code, str(exc))
        if read:
            if query and _wants_consistent(query):
                return self._consistent_get(key)
            try:
                return Response(200, self.store.get(key), OCTET_STREAM)
            except NoSuchKeyError:
                return _NO_SUCH_KEY
        if method == b"PUT":
            if len(body) > self.limits.max_value_bytes:
                return value_too_large(self.limits.max_value_bytes)
            return self._put(key, body)
        return self._delete(key)

    def decode_key(self, segment: bytes) -> str:
        """Percent-decode one path segment into a key, enforcing the limits."""
        raw = unquote_to_bytes(segment) if b"%" in segment else segment
        if not raw:
            raise InvalidKeyError("the key is empty")
        if len(raw) > self.limits.max_key_bytes:
            raise KeyTooLongError(f"the key is {len(raw)} bytes; the limit is {self.limits.max_key_bytes}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidKeyError("the key is not valid UTF-8 after percent-decoding") from None

    def _put(self, key: str, value: bytes) -> Response | Awaitable[Response]:
        try:
            written = self.log.write_put(key, value)
        except TucoError as exc:
            return refusal(exc, "not stored")
        return _answer_when_written(written, _CREATED, "not stored")

    def _delete(self, key: str) -> Response | Awaitable[Response]:
        try:
            written = self.log.write_delete(key)
        except TucoError as exc:
            return refusal(exc, "not deleted")
        return _answer_when_written(written, _DELETED, "not deleted")

    async def _consistent_get(self, key: str) -> Response:
        try:
            await self.log.catch_up()
        except LogError as exc:
            return _refusals.answer(exc, "no consistent read", _CONSISTENT_READ_FAILED)
        try:
            return Response(200, self.store.get(key), OCTET_STREAM)
        except NoSuchKeyError:
            return _NO_SUCH_KEY


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


def value_too_large(limit: int) -> Response:
    """The 413 answer, shared by every front end."""
    return error_response(413, "value_too_large", f"the value is over the {limit}-byte limit")


def _wants_consistent(query: bytes) -> bool:
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"consistent":
            return value.lower() in (b"", b"true", b"1", b"yes")
    return False
