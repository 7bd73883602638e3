"""The reading half of a native connection: httptools' callbacks, the request being parsed and its limits.

httptools (llhttp) does the parsing and calls back into :class:`RequestReader`
once per request line, header, body piece and message end; the reader keeps
the request being parsed in its own fields, reset in place at each request's
start (no object per request but the :class:`~tuco.http.messages.Request`),
and hands each complete one to :meth:`RequestReader._received`, which
:class:`~tuco.http._order.AnswerOrder` (its subclass) implements. The
connection's ``data_received`` feeds the parser itself; what a failed feed
means is decided here (:meth:`RequestReader._parse_failed`).

* **Limits before memory.** A target, a header block or a body over its limit
  is refused as soon as it shows (414, 431, 413), before it is buffered; a
  header spread over many reads is counted read by read.
* **A budget for bodies.** A body being received reserves its declared length
  (chunked ones: what has arrived) from one budget shared by all connections;
  a body that does not fit gets ``503 server_busy`` before it is read. A
  reservation ends when the request is complete, refused or its client gone.
* **A client certificate lapses.** Under mutual TLS the certificate was
  verified at the handshake; its notAfter is checked again at each request's
  head (and by the connection before each chunk of a stream). Past it, a
  request is answered ``401`` and the connection closed.
"""

from __future__ import annotations

import asyncio
from typing import Final

import httptools
import structlog

from tuco.http import answers
from tuco.http._context import ServerContext
from tuco.http._fast import find_byte as _find_byte
from tuco.http._tls import Peer
from tuco.http._wire import CLOSE, KEEP, KEEP_SAID
from tuco.http.answers import CERTIFICATE_EXPIRED, INTERNAL_ERROR, SERVER_BUSY, txn_body_too_large, value_too_large
from tuco.http.messages import Request, Response

__all__ = ["SHUTTING_DOWN", "RequestReader", "internal_error"]

_logger = structlog.get_logger("tuco.http")
_audit = structlog.get_logger("tuco.audit")

_CONDITIONS: Final = (b"if-match", b"if-none-match")
_QUERY: Final = 0x3F  # "?"

SHUTTING_DOWN: Final = answers.SHUTTING_DOWN
_SHUTTING_DOWN: Final = SHUTTING_DOWN
_URI_TOO_LONG: Final = answers.URI_TOO_LONG
_HEADERS_TOO_LARGE: Final = answers.HEADERS_TOO_LARGE
_DUPLICATE_LENGTH: Final = answers.DUPLICATE_LENGTH
_AMBIGUOUS_LENGTH: Final = answers.AMBIGUOUS_LENGTH
_BAD_TRANSFER_CODING: Final = answers.BAD_TRANSFER_CODING
_BAD_EXPECTATION: Final = answers.BAD_EXPECTATION


class _Stop(Exception):
    """Raised inside a parser callback to make httptools stop at once."""


def internal_error(exc: BaseException) -> Response:
    """The 500 answer to a bug of ours, logged with its traceback."""
    _logger.error("handler_failed", exc_info=exc)
    return INTERNAL_ERROR


class RequestReader(asyncio.Protocol):
    """Parses one connection's requests within its limits; the subclass answers them (the ``_received`` hook)."""

    __slots__ = (
        "_authorization",
        "_body_limit",
        "_body_refusal",
        "_body_size",
        "_chunks",
        "_client",
        "_clock",
        "_conditional",
        "_connection_header",
        "_content_length",
        "_continue_wanted",
        "_ctx",
        "_expect",
        "_head_size",
        "_header_count",
        "_headers",
        "_in_head",
        "_in_request",
        "_max_body",
        "_max_head_bytes",
        "_max_header_count",
        "_max_txn_body",
        "_messages",
        "_parser",
        "_peer",
        "_peer_until",
        "_raw_head",
        "_request_id",
        "_reserved",
        "_stopped",
        "_target",
        "_too_large",
        "_transfer_encoding",
        "_txn_too_large",
    )

    def __init__(self, ctx: ServerContext) -> None:
        settings = ctx.settings
        self._ctx = ctx
        self._clock = ctx.clock
        self._max_body = settings.max_body_bytes
        # A transaction's body may be larger than any value's (TUCO_MAX_TXN_BYTES, written as JSON): chosen by
        # the target once the head is read, with the 413 that names the setting to change.
        self._max_txn_body = settings.max_txn_body_bytes or settings.max_body_bytes
        self._too_large = value_too_large(self._max_body)
        self._txn_too_large = txn_body_too_large(self._max_txn_body)
        self._body_limit = self._max_body
        self._body_refusal = self._too_large
        self._max_head_bytes = settings.max_header_bytes
        self._max_header_count = settings.max_header_count
        self._parser: httptools.HttpRequestParser | None = None
        self._stopped = False  # no further request will be parsed
        self._peer: Peer | None = None
        self._peer_until = 0.0  # the client certificate's notAfter (Unix seconds); 0: none
        self._client: str | None = None
        # The request being parsed; on_message_begin resets it in place.
        self._in_request = False
        self._in_head = False
        self._messages = 0  # requests begun on this connection
        self._raw_head = 0
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._header_count = 0
        self._content_length: int | None = None
        self._transfer_encoding: bytes | None = None
        self._connection_header: bytes | None = None
        self._expect: bytes | None = None
        self._conditional = False  # If-Match or If-None-Match was sent
        self._authorization: bytes | None = None  # the Authorization header's value
        self._request_id: bytes | None = None  # the X-Request-Id header's value
        self._chunks: list[bytes] | None = None
        self._body_size = 0
        self._reserved = 0  # bytes of the shared body budget this request holds
        self._continue_wanted = False

    # -- what the connection implements ----------------------------------------

    def _received(self, request: Request, mode: int) -> None:
        """A complete request, to be answered in its turn (``mode``: keep-alive or close after it)."""
        raise NotImplementedError

    def _reject(self, response: Response) -> None:
        """Answer the request being parsed with an error, in its turn, and close after it."""
        raise NotImplementedError

    def _continue_if_idle(self) -> None:
        """Send ``100 Continue`` now if nothing is ahead of this request."""
        raise NotImplementedError

    # -- reading ------------------------------------------------------------------

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        """``feed_data`` raised: a malformed or oversized request is rejected, a bug of ours answered 500.

        The connection's ``data_received`` feeds the parser itself (a call less per read) and comes here when
        llhttp, or one of our callbacks, stopped it.
        """
        cause = exc.__context__
        if cause is None or isinstance(cause, _Stop):
            if not self._stopped:  # llhttp rejected the bytes
                self._reject(answers.bad_request(f"malformed request: {exc}"))
        elif not isinstance(cause, Exception):
            raise cause from None  # KeyboardInterrupt and the like, raised inside a callback
        else:  # a bug of ours inside a callback: not the client's fault
            self._reject(internal_error(cause))

    def _head_spread(self, size: int) -> None:
        """A read ended inside the head it began in: count it against the head's limit.

        A header spread over several reads is buffered inside httptools, where ``on_header`` cannot count it
        yet; the reads are counted instead.
        """
        self._raw_head += size
        if self._raw_head > self._max_head_bytes:
            self._reject(_HEADERS_TOO_LARGE)

    def _abandon_request(self) -> None:
        """Stop parsing: the request being read is refused, and its share of the body budget given back."""
        self._stopped = True
        self._in_request = False
        self._in_head = False
        self._continue_wanted = False
        self._chunks = None
        self._release_body()

    def _release_body(self) -> None:
        """Give the request's share of the body budget back (it was refused, or its client left)."""
        if self._reserved:
            self._ctx.body_budget += self._reserved
            self._reserved = 0

    def _certificate_lapsed(self, what: str) -> None:
        """The audit line of a request refused, or a stream ended, because the client certificate expired."""
        peer = self._peer
        _audit.warning(
            "request_denied" if what == "request" else "watch_ended",
            status=401,
            reason="certificate_expired",
            cert=peer.identity if peer is not None else None,
            client=self._client,
        )

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        if self._stopped:
            raise _Stop
        if self._ctx.closing:
            self._reject(_SHUTTING_DOWN)
            raise _Stop
        self._in_request = True
        self._in_head = True
        self._messages += 1
        self._raw_head = 0
        self._target = b""
        self._headers = []
        self._head_size = 0
        self._header_count = 0
        self._content_length = None
        self._transfer_encoding = None
        self._connection_header = None
        self._expect = None
        self._conditional = False
        self._authorization = None
        self._request_id = None
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        target = self._target + url if self._target else url
        if len(target) > self._max_head_bytes:
            self._reject(_URI_TOO_LONG)
            raise _Stop
        self._target = target

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        size = self._head_size + len(name) + len(value) + 4
        self._head_size = size
        if self._header_count > self._max_header_count or size + len(self._target) > self._max_head_bytes:
            self._reject(_HEADERS_TOO_LARGE)
            raise _Stop
        self._headers.append((name, value))
        # Only eight headers matter here; the length test skips the rest cheaply.
        length = len(name)
        if length != 14 and length != 17 and length != 10 and length != 6:
            if length == 8 or length == 13:
                lowered = name.lower()
                if lowered in _CONDITIONS:
                    self._conditional = True
                elif lowered == b"authorization" and self._authorization is None:  # the first one counts
                    self._authorization = value
            elif length == 12 and self._request_id is None and name.lower() == b"x-request-id":
                self._request_id = value
            return
        name = name.lower()
        if name == b"content-length":
            if self._content_length is not None:
                self._reject(_DUPLICATE_LENGTH)
                raise _Stop
            self._content_length = int(value)  # llhttp has checked that it is all digits
        elif name == b"transfer-encoding":
            current = self._transfer_encoding
            self._transfer_encoding = value if current is None else current + b"," + value
        elif name == b"connection":
            self._connection_header = value.lower()
        elif name == b"expect":
            self._expect = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._peer_until and self._clock.wall() >= self._peer_until:
            self._certificate_lapsed("request")
            self._reject(CERTIFICATE_EXPIRED)
            raise _Stop
        length = self._content_length
        coding = self._transfer_encoding
        if length or coding is not None:  # a body comes: its limit is chosen by the target (a GET pays nothing)
            if self._target.startswith(b"/v1/txn"):
                self._body_limit, self._body_refusal = self._max_txn_body, self._txn_too_large
            else:
                self._body_limit, self._body_refusal = self._max_body, self._too_large
        if coding is not None:
            if length is not None:
                self._reject(_AMBIGUOUS_LENGTH)
                raise _Stop
            if coding.strip().lower() != b"chunked":
                self._reject(_BAD_TRANSFER_CODING)
                raise _Stop
        elif length is not None:
            if length > self._body_limit:
                self._reject(self._body_refusal)
                raise _Stop
            if length:
                ctx = self._ctx
                if length > ctx.body_budget:
                    self._reject(SERVER_BUSY)
                    raise _Stop
                ctx.body_budget -= length
                self._reserved = length
        if self._expect is not None:
            if self._expect.strip().lower() != b"100-continue":
                self._reject(_BAD_EXPECTATION)
                raise _Stop
            if length or coding is not None:
                self._continue_wanted = True
                self._continue_if_idle()

    def on_body(self, body: bytes) -> None:
        size = self._body_size + len(body)
        if size > self._body_limit:
            self._chunks = None
            self._reject(self._body_refusal)
            raise _Stop
        if size > self._reserved:  # chunked: reserve what arrived (a declared length was reserved whole)
            ctx = self._ctx
            more = size - self._reserved
            if more > ctx.body_budget:
                self._chunks = None
                self._reject(SERVER_BUSY)
                raise _Stop
            ctx.body_budget -= more
            self._reserved = size
        self._body_size = size
        self._continue_wanted = False
        if self._chunks is None:
            self._chunks = [body]
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._in_request = False
        self._continue_wanted = False
        if self._reserved:
            self._ctx.body_budget += self._reserved
            self._reserved = 0
        chunks = self._chunks
        if chunks is None:
            body = b""
        else:
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._chunks = None
        parser = self._parser
        if not parser.should_keep_alive() or parser.should_upgrade() or self._ctx.closing:  # type: ignore[union-attr]
            mode = CLOSE  # llhttp parses nothing after an upgrade (or CONNECT): answer it, then close
        elif self._connection_header is not None and self._connection_header.find(b"keep-alive") >= 0:
            mode = KEEP_SAID
        else:
            mode = KEEP
        if mode == CLOSE:
            self._stopped = True
        target = self._target
        find = _find_byte
        if (find(target, _QUERY) if find is not None else target.find(b"?")) >= 0:  # not ``in``: see tuco.http.api
            path, _, query = target.partition(b"?")
        else:
            path, query = target, b""
        request = Request(
            parser.get_method(),  # type: ignore[union-attr]
            path,
            query,
            self._headers,
            body,
            self._peer,
            self._conditional,
            self._client,
            self._authorization,
            self._request_id,
        )
        self._received(request, mode)
