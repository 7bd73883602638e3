"""The canned answers both front ends share, and the one way an error becomes a response.

Each :class:`~tuco.errors.TucoError` class carries its ``code`` and HTTP
``status`` (the one error table); :func:`error_answer` renders any of them.
What a client is told when the log refuses a request is tuco's own words,
never the OS's or the driver's (paths, hosts, errno text); those go to the
server's log.
"""

from __future__ import annotations

import json

import structlog

from tuco.errors import TucoError, UnauthorizedError
from tuco.http.messages import Headers, Response

__all__ = [
    "CERTIFICATE_EXPIRED",
    "INTERNAL_ERROR",
    "JSON",
    "OCTET_STREAM",
    "PROMETHEUS_TEXT",
    "RETRY_SOON",
    "SERVER_BUSY",
    "STARTING",
    "error_answer",
    "error_response",
    "json_response",
    "log_message",
    "refusal",
    "value_too_large",
]

_logger = structlog.get_logger("tuco.http")

OCTET_STREAM = b"application/octet-stream"
JSON = b"application/json"
PROMETHEUS_TEXT = b"text/plain; version=0.0.4; charset=utf-8"


def error_response(status: int, code: str, message: str, headers: Headers = (), extra: bytes = b"") -> Response:
    """A JSON error body ``{"error": code, "message": message}``."""
    body = json.dumps({"error": code, "message": message}).encode()
    return Response(status, body, JSON, headers, extra)


def error_answer(error: TucoError, extra: bytes = b"") -> Response:
    """The answer to an error raised for this request: its class's status and code, its message."""
    return error_response(error.status, error.code, str(error), extra=extra)


def json_response(status: int, payload: object, extra: bytes = b"") -> Response:
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), JSON, (), extra)


STARTING = error_response(503, "starting", "replaying the transaction log; try again shortly")
INTERNAL_ERROR = error_response(500, "internal_error", "the server failed to handle the request; see its log")
RETRY_SOON: Headers = ((b"Retry-After", b"1"),)
CERTIFICATE_EXPIRED = error_response(
    401, UnauthorizedError.code, "the client certificate has expired; connect again with a valid one"
)
SERVER_BUSY = error_response(
    503, "server_busy", "the server is receiving too many request bodies at once; retry shortly", RETRY_SOON
)

_LOG_MESSAGES: dict[str, str] = {
    "log_failed": "the transaction log failed and takes no more writes; see the server's log",
    "log_unavailable": "the database is out of reach; the write may have been stored, and retrying it is safe",
    "log_closed": "the server is shutting down and takes no more writes",
    "log_read_only": "the database role cannot write (a privilege is missing; /readyz names it); "
    "reads are still served",
    "starting": "replaying the transaction log; try again shortly",
}
_LOG_MESSAGE_OTHER = "the transaction log cannot take requests; see the server's log"


def log_message(code: str) -> str:
    """tuco's fixed message for a log error code."""
    return _LOG_MESSAGES.get(code, _LOG_MESSAGE_OTHER)


def value_too_large(limit: int) -> Response:
    """The 413 answer, shared by every front end."""
    return error_response(413, "value_too_large", f"the value is over the {limit}-byte limit")


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
            response = self._answers[key] = error_response(error.status, error.code, text)
        return response


_refusals = _Refusals()


def refusal(error: TucoError, doing: str, message: str | None = None) -> Response:
    """The fixed answer to a request the log refused (``doing``: "not stored", "not deleted"...)."""
    return _refusals.answer(error, doing, message)
