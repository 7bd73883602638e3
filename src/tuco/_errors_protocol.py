"""The protocol errors: what the HTTP layer answers on its own; :mod:`tuco.errors` re-exports them."""

from __future__ import annotations

from tuco._errors_base import RETRY_SOON, Headers, TucoError

__all__ = [
    "BadRequestError",
    "CancelledError",
    "ExpectationFailedError",
    "HeadersTooLargeError",
    "MethodNotAllowedError",
    "NotFoundError",
    "ProtocolError",
    "RequestTimeoutError",
    "ServerBusyError",
    "ShuttingDownError",
    "StartingError",
    "TooManyConnectionsError",
    "UnsupportedTransferCodingError",
    "UriTooLongError",
]


class ProtocolError(TucoError):
    """What the HTTP layer answers on its own: the request is refused before (or instead of) a handler."""

    __module__ = "tuco.errors"

    code = "protocol_error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)


class BadRequestError(ProtocolError):
    """A request the server cannot parse or frame."""

    __module__ = "tuco.errors"

    code = "bad_request"
    status = 400


class NotFoundError(ProtocolError):
    """No such resource (a path no route matches, or a reserved name not offered)."""

    __module__ = "tuco.errors"

    code = "not_found"
    status = 404


class MethodNotAllowedError(ProtocolError):
    """A method the route does not answer; ``allow`` lists those it does."""

    __module__ = "tuco.errors"

    code = "method_not_allowed"
    status = 405

    def __init__(self, allow: str) -> None:
        super().__init__(f"allowed methods: {allow}")
        self.allow = allow

    @property
    def headers(self) -> Headers:
        return ((b"Allow", self.allow.encode()),)


class RequestTimeoutError(ProtocolError):
    """The request was not received in time."""

    __module__ = "tuco.errors"

    code = "request_timeout"
    status = 408


class UriTooLongError(ProtocolError):
    """The request target is over the head limit."""

    __module__ = "tuco.errors"

    code = "uri_too_long"
    status = 414


class ExpectationFailedError(ProtocolError):
    """An ``Expect`` header other than ``100-continue``."""

    __module__ = "tuco.errors"

    code = "expectation_failed"
    status = 417


class HeadersTooLargeError(ProtocolError):
    """Too many request headers, or too large."""

    __module__ = "tuco.errors"

    code = "headers_too_large"
    status = 431


class UnsupportedTransferCodingError(ProtocolError):
    """A transfer coding other than chunked."""

    __module__ = "tuco.errors"

    code = "not_implemented"
    status = 501


class StartingError(ProtocolError):
    """The log is being replayed: nothing but health is answered yet."""

    __module__ = "tuco.errors"

    code = "starting"
    status = 503


class ShuttingDownError(ProtocolError):
    """The server is closing: retry on a new connection."""

    __module__ = "tuco.errors"

    code = "shutting_down"
    status = 503


class CancelledError(ProtocolError):
    """The request was cancelled before it was answered."""

    __module__ = "tuco.errors"

    code = "cancelled"
    status = 503


class TooManyConnectionsError(ProtocolError):
    """Over the connection cap: retry shortly."""

    __module__ = "tuco.errors"

    code = "too_many_connections"
    status = 503

    @property
    def headers(self) -> Headers:
        return RETRY_SOON


class ServerBusyError(ProtocolError):
    """Over the budget for request bodies being received at once: retry shortly."""

    __module__ = "tuco.errors"

    code = "server_busy"
    status = 503

    @property
    def headers(self) -> Headers:
        return RETRY_SOON
