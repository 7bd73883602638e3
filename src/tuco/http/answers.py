"""The canned answers both front ends share, and the one way an error becomes a response.

Each :class:`~tuco.errors.TucoError` class carries its ``code`` and HTTP
``status`` (the one error table); :func:`error_answer` renders any of them.
What a client is told when the log refuses a request is tuco's own words,
never the OS's or the driver's (paths, hosts, errno text); those go to the
server's log.
"""

from __future__ import annotations

import json
from typing import Final

import structlog

from tuco.errors import (
    BadRequestError,
    CancelledError,
    ExpectationFailedError,
    HeadersTooLargeError,
    NoSuchKeyError,
    NotFoundError,
    RequestTimeoutError,
    ServerBusyError,
    ShuttingDownError,
    StartingError,
    TooManyConnectionsError,
    TucoError,
    TxnBytesLimitError,
    UnauthorizedError,
    UnsupportedTransferCodingError,
    UriTooLongError,
    ValueTooLargeError,
)
from tuco.http.messages import Headers, Response

__all__ = [
    "AMBIGUOUS_LENGTH",
    "BAD_EXPECTATION",
    "BAD_TRANSFER_CODING",
    "CANCELLED",
    "CERTIFICATE_EXPIRED",
    "DUPLICATE_LENGTH",
    "HEADERS_TOO_LARGE",
    "INTERNAL_ERROR",
    "INVALID_TOKEN",
    "JSON",
    "NOT_FOUND_PATH",
    "NOT_READY",
    "NO_SUCH_KEY",
    "OCTET_STREAM",
    "PROMETHEUS_TEXT",
    "REQUEST_TIMEOUT",
    "RETRY_SOON",
    "SERVER_BUSY",
    "SHUTTING_DOWN",
    "STARTING",
    "TOO_MANY_CONNECTIONS",
    "UNAUTHORIZED",
    "URI_TOO_LONG",
    "bad_request",
    "error_answer",
    "error_response",
    "json_response",
    "log_message",
    "refusal",
    "txn_body_too_large",
    "value_too_large",
]

_logger = structlog.get_logger("tuco.http")

OCTET_STREAM: Final = b"application/octet-stream"
JSON: Final = b"application/json"
PROMETHEUS_TEXT: Final = b"text/plain; version=0.0.4; charset=utf-8"


def error_response(
    status: int,
    code: str,
    message: str,
    headers: Headers = (),
    etag: int | None = None,
    revision: int | None = None,
    fields: Headers = (),
) -> Response:
    """A JSON error body ``{"error": code, "message": message}``; only this module and error_answer call it."""
    body = json.dumps({"error": code, "message": message}).encode()
    return Response(status, body, JSON, headers, etag, revision, fields=fields)


def error_answer(
    error: TucoError, etag: int | None = None, revision: int | None = None, fields: Headers = ()
) -> Response:
    """The answer to an error: its class's status, code and header fields, its message (and any fields given)."""
    return error_response(error.status, error.code, str(error), error.headers, etag, revision, fields)


def json_response(status: int, payload: object, revision: int | None = None) -> Response:
    """A compact JSON body, with ``X-Tuco-Revision`` if ``revision`` is given."""
    return Response(status, json.dumps(payload, separators=(",", ":")).encode(), JSON, (), None, revision)


def bad_request(message: str) -> Response:
    """400 for a request that does not parse, saying why."""
    return error_answer(BadRequestError(message))


def value_too_large(limit: int) -> Response:
    """The 413 answer, shared by every front end."""
    return error_answer(ValueTooLargeError.over(limit))


def txn_body_too_large(limit: int) -> Response:
    """The 413 answer to a transaction's body over :attr:`Limits.txn_body_bytes <tuco.limits.Limits.txn_body_bytes>`."""
    return error_answer(
        TxnBytesLimitError(
            f"the transaction's body is over the {limit}-byte limit that TUCO_MAX_TXN_BYTES and TUCO_MAX_TXN_OPS "
            "allow: split it into smaller transactions, or raise TUCO_MAX_TXN_BYTES"
        )
    )


RETRY_SOON: Final[Headers] = ((b"Retry-After", b"1"),)

# The canned answers, each built once from its error class.
STARTING: Final = error_answer(StartingError("replaying the transaction log; try again shortly"))
INTERNAL_ERROR: Final = error_answer(TucoError("the server failed to handle the request; see its log"))
SHUTTING_DOWN: Final = error_answer(ShuttingDownError("the server is shutting down; retry on a new connection"))
CANCELLED: Final = error_answer(CancelledError("the request was cancelled before it was answered"))
TOO_MANY_CONNECTIONS: Final = error_answer(
    TooManyConnectionsError("the server has too many open connections; retry shortly")
)
SERVER_BUSY: Final = error_answer(
    ServerBusyError("the server is receiving too many request bodies at once; retry shortly")
)
URI_TOO_LONG: Final = error_answer(UriTooLongError("the request target is too long"))
HEADERS_TOO_LARGE: Final = error_answer(HeadersTooLargeError("too many request headers, or they are too large"))
REQUEST_TIMEOUT: Final = error_answer(RequestTimeoutError("the request was not received in time"))
DUPLICATE_LENGTH: Final = bad_request("more than one Content-Length header")
AMBIGUOUS_LENGTH: Final = bad_request("both Content-Length and Transfer-Encoding are present")
BAD_TRANSFER_CODING: Final = error_answer(
    UnsupportedTransferCodingError("only the chunked transfer coding is supported")
)
BAD_EXPECTATION: Final = error_answer(ExpectationFailedError("only 'Expect: 100-continue' is supported"))
NOT_FOUND_PATH: Final = error_answer(
    NotFoundError(
        "no such resource: a key is /v1/key/{key}, where the rest of the path is the key (/v1/key/app/config "
        "is the key app/config, as /v1/key/app%2Fconfig is); the book's /v1/{key} takes one segment only; "
        "every route is in /v1/openapi.json"
    )
)
NO_SUCH_KEY: Final = error_answer(NoSuchKeyError())
NOT_READY: Final = json_response(503, {"ready": False})
UNAUTHORIZED: Final = error_answer(
    UnauthorizedError("authentication required: send Authorization: Bearer <token> with a valid token")
)
INVALID_TOKEN: Final = error_answer(
    UnauthorizedError(
        "the token is not valid (malformed, unknown, revoked or expired)",
        b'Bearer realm="tuco", error="invalid_token"',
    )
)
NOT_BEARER: Final = error_answer(
    UnauthorizedError(
        "the Authorization header must be 'Bearer <token>': the word Bearer, one space, then the token",
        b'Bearer realm="tuco", error="invalid_request"',
    )
)
CERTIFICATE_EXPIRED: Final = error_answer(
    UnauthorizedError("the client certificate has expired; connect again with a valid one", None)
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
