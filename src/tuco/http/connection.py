"""One HTTP/1.1 connection of the native server: parsing, ordering, limits, time-outs.

httptools (llhttp) does the parsing and calls back into :class:`HttpConnection`
once per request line, header, body piece and message end. Everything else
lives here, in one ``asyncio.Protocol`` with no task per request:

* **Order.** Responses leave in request order. A synchronous answer (a GET)
  is written at once when nothing is ahead of it; otherwise it takes a slot in
  ``_queue`` behind the awaitable answers (a PUT waiting for the log), and the
  queue is drained from the front as they complete.
* **Writes come first.** A request after an unfinished PUT or DELETE on the
  same connection is not handled until that write is done, and a PUT or DELETE
  after an unanswered request waits for its answer (RFC 9112 lets only safe
  requests run in parallel), so a pipelined PUT then GET reads the write.
* **Bounded memory.** httptools parses all of a read before returning, so
  pausing the transport alone would still let one 256 KiB read of tiny GETs
  produce thousands of responses. Requests parsed while output is backed up
  (writing paused, or ``max_pipelined`` answers pending) wait unanswered in
  ``_backlog`` and reading is paused: what is held is bounded by what was
  already read plus ``max_pipelined`` responses plus the transport's
  high-water mark.
* **One write per read.** Responses produced while handling one read are
  gathered and written with one call, so a pipelined burst costs one syscall.
* **One timer.** Each connection owns at most one ``TimerHandle``. Moving the
  deadline later only updates a float; the handle re-arms itself when it fires
  early. Only a deadline that moves earlier replaces the handle.
* **Counted from accept.** Under TLS the listening socket is plain and each
  connection starts its handshake itself (``loop.start_tls``), so a connection
  counts against ``max_connections`` from the moment it is accepted, and one
  over the cap is closed before any TLS state is allocated for it. (A server
  created with ``ssl=`` tells its protocol nothing until the handshake is
  done: thousands of silent handshakes would be invisible to the cap.)
* **A budget for bodies.** A body being received reserves its declared length
  (chunked ones: what has arrived) from one budget shared by all connections;
  a body that does not fit gets ``503 server_busy`` before it is read. A
  reservation ends when the request is complete, refused or its client gone.
* **Streams.** A :class:`~tuco.http.messages.StreamResponse` is sent with
  ``Transfer-Encoding: chunked`` by a task that writes each chunk as it comes
  and waits while writing is paused; answers to later requests wait in
  ``_queue`` until its last chunk. A client that goes away or stops sending
  cancels the task, which closes the chunk iterator.
* **A client certificate lapses.** Under mutual TLS the certificate was
  verified at the handshake; its notAfter is checked again at each request's
  head and before each chunk of a stream. Past it, a request is answered
  ``401`` and the connection closed, a stream ends and the connection closes:
  an open connection never outlives its certificate (and the server's TLS
  context issues no session tickets, so none is resumed without a handshake).
* **A stream is the last answer.** A stream is the last
  answer on its connection: its head says ``Connection: close``, and what the
  client pipelined after it is read and dropped, never handled (its answer
  could never be sent). A large chunk is written
  as it is, between its framing lines, never copied: a watch frame is one
  bytes object shared by every watcher. While streaming, the transport's
  high-water mark is the per-stream bound (``stream_backlog_bytes``), and what
  all streams hold unsent is counted, each shared piece once, against
  ``max_stream_bytes`` (:mod:`tuco.http._backlog`): over it, the streams whose
  clients stopped reading are cut off, the longest stopped first.
* **Closing politely.** After the last response we half-close (``write_eof``)
  and discard what the client still sends for a moment, instead of closing a
  socket with unread data, which makes the kernel reset it and can destroy the
  error response the client has not read yet.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import http
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, cast

import httptools
import structlog

from tuco.http import answers
from tuco.http._backlog import StreamBacklog, StreamBacklogs
from tuco.http._tls import Peer, peer_of
from tuco.http.answers import CERTIFICATE_EXPIRED, INTERNAL_ERROR, SERVER_BUSY, value_too_large
from tuco.http.messages import Deferred, Request, Response, StreamResponse
from tuco.http.observer import RequestObserver, clock

if TYPE_CHECKING:
    from tuco.http.server import ServerSettings

__all__ = ["Handler", "HttpConnection", "ServerContext"]

Handler = Callable[[Request], Response | StreamResponse | Deferred | Awaitable[Response | StreamResponse]]
"""A request to a response, or an awaitable of one."""

_logger = structlog.get_logger("tuco.http")
_audit = structlog.get_logger("tuco.audit")

# How a response ends the exchange: keep-alive implied, keep-alive said (HTTP/1.0), or close.
_KEEP: Final = 0
_KEEP_SAID: Final = 1
_CLOSE: Final = 2

# Which deadline the connection's timer is measuring.
_UNSET: Final = 0
_IDLE: Final = 1
_REQUEST: Final = 2
_SEND: Final = 3
_LINGER: Final = 4
_BUSY: Final = 5

# A ClientHello is a few KiB; more than this before the TLS layer takes over is not one.
_MAX_EARLY_BYTES: Final = 64 * 1024
# How long to keep discarding a client's bytes after our last response.
_LINGER_SECONDS: Final = 2.0
# Bodies up to this size are copied into the head's buffer: one small write beats two.
_JOIN_BODY_BYTES: Final = 16 * 1024
_MAX_CACHED_HEADS: Final = 1024
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
# What the kernel may hold unsent for a stream's socket: this fraction of its backlog bound.
_KERNEL_SHARE: Final = 16
_NOTSENT_LOWAT: Final[int | None] = getattr(socket, "TCP_NOTSENT_LOWAT", None)
_CONDITIONS: Final = (b"if-match", b"if-none-match")
_SAFE: Final = (b"GET", b"HEAD")  # what may run beside unanswered requests (OPTIONS and TRACE get 405 anyway)
_join = b"".join

# RFC 9110 names where Python's table still has the older ones.
_REASONS: dict[int, str] = {status.value: status.phrase for status in http.HTTPStatus}
_REASONS.update(
    {413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable", 422: "Unprocessable Content"}
)

_CANCELLED = answers.CANCELLED
_SHUTTING_DOWN = answers.SHUTTING_DOWN
_OVERLOADED = answers.TOO_MANY_CONNECTIONS
_URI_TOO_LONG = answers.URI_TOO_LONG
_HEADERS_TOO_LARGE = answers.HEADERS_TOO_LARGE
_TIMEOUT = answers.REQUEST_TIMEOUT
_DUPLICATE_LENGTH = answers.DUPLICATE_LENGTH
_AMBIGUOUS_LENGTH = answers.AMBIGUOUS_LENGTH
_BAD_TRANSFER_CODING = answers.BAD_TRANSFER_CODING
_BAD_EXPECTATION = answers.BAD_EXPECTATION


class ServerContext:
    """What all connections of one server share: handler, limits, registry, clock."""

    __slots__ = (
        "_emptied",
        "body_budget",
        "closing",
        "connections",
        "date_tail",
        "handler",
        "handshake_timeout",
        "loop",
        "observer",
        "peak_connections",
        "settings",
        "streams",
        "tls",
    )

    def __init__(
        self,
        handler: Handler,
        settings: ServerSettings,
        loop: asyncio.AbstractEventLoop,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 10.0,
        observer: RequestObserver | None = None,
    ) -> None:
        self.handler = handler
        self.observer = observer
        self.settings = settings
        self.loop = loop
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        self.connections: set[HttpConnection] = set()
        self.peak_connections = 0  # the most open at once since the server last gave freed heap back (server._tick)
        self.closing = False
        # Bytes of request bodies still being received may add up to this, on all connections together.
        self.body_budget = settings.max_buffered_bytes
        # What streams (watches) hold unsent, all connections together.
        self.streams = StreamBacklogs(settings.max_stream_bytes)
        # The end of every response head; the server refreshes the date once a second.
        self.date_tail = b"\r\n\r\n"
        self._emptied = asyncio.Event()

    def admit(self, connection: HttpConnection) -> bool:
        """Register a new connection, or refuse it when at the cap or shutting down."""
        count = len(self.connections)
        if self.closing or count >= self.settings.max_connections:
            return False
        self.connections.add(connection)
        if count >= self.peak_connections:
            self.peak_connections = count + 1
        return True

    def release(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._emptied.set()

    async def wait_empty(self) -> None:
        """Return once no connection is open."""
        while self.connections:
            self._emptied.clear()
            await self._emptied.wait()


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``, with the RFC 9110 reason phrase."""
    return f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode("ascii")


_HeadKey = tuple[int, bytes | None, tuple[tuple[bytes, bytes], ...], int]
_HEADS: dict[_HeadKey, bytes] = {}


def _build_head(key: _HeadKey) -> bytes:
    """A response head's status line and static headers (up to ``extra`` and Content-Length); cached by shape."""
    status, content_type, headers, mode = key
    parts = [status_line(status)]
    if content_type is not None:
        parts += [b"Content-Type: ", content_type, b"\r\n"]
    for name, value in headers:
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value:
            # A header that would split the response is a bug upstream; drop it rather than emit it.
            _logger.error("response_header_dropped", name=name)
            continue
        parts += [name, b": ", value, b"\r\n"]
    if mode == _CLOSE:
        parts.append(b"Connection: close\r\n")
    elif mode == _KEEP_SAID:
        parts.append(b"Connection: keep-alive\r\n")
    head = b"".join(parts)
    if len(_HEADS) >= _MAX_CACHED_HEADS:
        _HEADS.clear()
    _HEADS[key] = head
    return head


def render(response: Response, mode: int, date_tail: bytes) -> bytes:
    """The complete bytes of a response whose body is sent too; used outside connections."""
    body = response.body
    key = (response.status, response.content_type, response.headers, mode)
    head = _HEADS.get(key) or _build_head(key)
    return b"%b%bContent-Length: %d%b%b" % (head, response.extra, len(body), date_tail, body)


def _stream_head(response: StreamResponse, mode: int, date_tail: bytes, extra: bytes) -> bytes:
    """The head of a chunked response (streams are rare: not cached)."""
    key = (response.status, response.content_type, response.headers, mode)
    head = _HEADS.get(key) or _build_head(key)
    return head + extra + b"Transfer-Encoding: chunked" + date_tail


def _id_line(request_id: bytes) -> bytes:
    return b"X-Request-Id: " + request_id + b"\r\n"


class _Stop(Exception):
    """Raised inside a parser callback to make httptools stop at once."""


class _Slot:
    """A place in the response order; ``response`` is filled when the handler finishes.

    A slot waiting for its answer keeps its ``request`` and when it was dispatched, for the request's metrics.
    """

    __slots__ = ("head_only", "mode", "request", "request_id", "response", "started")

    def __init__(
        self,
        response: Response | StreamResponse | None,
        mode: int,
        head_only: bool,
        request_id: bytes | None = None,
        request: Request | None = None,
        started: float = 0.0,
    ) -> None:
        self.response = response
        self.mode = mode
        self.head_only = head_only
        self.request_id = request_id
        self.request = request
        self.started = started


class _Held:
    """A parsed request, or a ready rejection, waiting because output is backed up."""

    __slots__ = ("mode", "rejection", "request")

    def __init__(self, request: Request | None, mode: int, rejection: Response | None) -> None:
        self.request = request
        self.mode = mode
        self.rejection = rejection


class HttpConnection(asyncio.Protocol):
    """The server side of one client connection; the ``on_*`` methods are httptools' callbacks."""

    __slots__ = (
        "_authorization",
        "_backlog",
        "_body_size",
        "_chunks",
        "_client",
        "_conditional",
        "_connection_header",
        "_content_length",
        "_continue_wanted",
        "_ctx",
        "_deadline",
        "_drained",
        "_early",
        "_early_is_tls",
        "_eof",
        "_expect",
        "_handler",
        "_handshake",
        "_head_size",
        "_header_count",
        "_headers",
        "_in_head",
        "_in_request",
        "_lingering",
        "_loop",
        "_max_body",
        "_max_head_bytes",
        "_max_header_count",
        "_max_pipelined",
        "_messages",
        "_observer",
        "_out",
        "_out_size",
        "_parser",
        "_peer",
        "_peer_until",
        "_queue",
        "_raw_head",
        "_reading_paused",
        "_request_id",
        "_reserved",
        "_stopped",
        "_stream_backlog",
        "_stream_task",
        "_streaming",
        "_target",
        "_tasks",
        "_timer",
        "_timer_state",
        "_timer_when",
        "_tls",
        "_transfer_encoding",
        "_transport",
        "_unsafe_pending",
        "_write_high_water",
        "_write_paused",
    )

    def __init__(self, ctx: ServerContext) -> None:
        settings = ctx.settings
        self._ctx = ctx
        self._loop = ctx.loop
        self._handler = ctx.handler
        self._observer = ctx.observer
        self._max_body = settings.max_body_bytes
        self._max_head_bytes = settings.max_header_bytes
        self._max_header_count = settings.max_header_count
        self._max_pipelined = settings.max_pipelined
        self._write_high_water = settings.write_high_water
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpRequestParser | None = None
        self._tls = False
        # The request being parsed.
        self._in_request = False
        self._in_head = False
        self._messages = 0
        self._raw_head = 0
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._peer: Peer | None = None
        self._peer_until = 0.0  # the client certificate's notAfter (Unix seconds); 0: none
        self._client: str | None = None
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
        self._handshake: asyncio.Task[None] | None = None
        # Bytes that arrived during the handshake: TLS records read before the TLS layer took the transport over
        # (_early_is_tls), then requests decrypted before _start_tls resumed; see _start_tls.
        self._early: list[bytes] = []
        self._early_is_tls = True
        # Answers in request order, requests held back, and the handlers' tasks.
        self._queue: collections.deque[_Slot] = collections.deque()
        self._backlog: collections.deque[_Held] = collections.deque()
        self._tasks: set[asyncio.Future[Response | StreamResponse]] = set()
        self._unsafe_pending = 0  # unfinished PUTs and DELETEs; later requests wait for them
        # A streamed response being sent: later answers wait in _queue until it ends.
        self._streaming = False
        self._stream_task: asyncio.Task[None] | None = None
        self._stream_backlog: StreamBacklog | None = None
        self._drained: asyncio.Event | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        # Flow control and the end of the connection.
        self._write_paused = False
        self._reading_paused = False
        self._stopped = False  # no further request will be parsed
        self._lingering = False  # the last response is written; discarding input until the client goes
        self._eof = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._timer_state = _UNSET
        self._deadline: float | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream server makes nothing else
        ctx = self._ctx
        if not ctx.admit(self):
            if ctx.tls is None:  # under TLS nothing can be said before a handshake we will not spend on it
                transport.write(render(_SHUTTING_DOWN if ctx.closing else _OVERLOADED, _CLOSE, ctx.date_tail))
            transport.close()
            self._stopped = True
            return
        if ctx.tls is not None:
            self._stopped = True  # until the handshake is done, what arrives is the TLS layer's (see data_received)
            self._handshake = self._loop.create_task(self._start_tls(transport, ctx.tls))
            return
        self._start(transport)

    async def _start_tls(self, raw: asyncio.Transport, tls: ssl.SSLContext) -> None:
        """Handshake, then serve; a failed or abandoned handshake gives its place under the cap back.

        uvloop starts reading right after ``connection_made`` whatever it did, so
        the start of the ClientHello may reach us before ``start_tls`` puts the TLS
        protocol in front. Those bytes are handed to it by a callback queued just
        before ``start_tls`` runs: callbacks run in order, so it runs after the
        swap and before the TLS protocol's own ``connection_made``, which finds
        them in its input buffer. And a client may send its first request with
        its last handshake message: the TLS layer decrypts it before this
        coroutine resumes, so it is kept and parsed once we serve.
        """
        self._loop.call_soon(self._hand_over_early_bytes, raw)
        try:
            transport = await self._loop.start_tls(
                raw, self, tls, server_side=True, ssl_handshake_timeout=self._ctx.handshake_timeout
            )
        except (Exception, asyncio.CancelledError):  # the client's failure, not ours: it just goes
            transport = None
        self._handshake = None
        early, self._early = self._early, []
        if transport is None or transport.is_closing():
            raw.abort()
            self._stopped = True
            self._ctx.release(self)
            return
        self._start(transport)
        if early:
            self.data_received(b"".join(early))

    def _hand_over_early_bytes(self, raw: asyncio.Transport) -> None:
        early, self._early = self._early, []
        self._early_is_tls = False
        protocol = raw.get_protocol()
        if not early or protocol is self:
            return
        data = memoryview(b"".join(early))
        if hasattr(protocol, "buffer_updated"):  # both loops' TLS protocols are buffered ones
            buffered = cast(asyncio.BufferedProtocol, protocol)
            while data:
                buffer = memoryview(buffered.get_buffer(len(data)))
                size = min(len(buffer), len(data))
                buffer[:size] = data[:size]
                buffered.buffer_updated(size)
                data = data[size:]
        else:
            cast(asyncio.Protocol, protocol).data_received(bytes(data))

    def _start(self, transport: asyncio.Transport) -> None:
        self._stopped = False
        self._transport = transport
        self._parser = httptools.HttpRequestParser(self)
        self._tls = transport.get_extra_info("sslcontext") is not None
        if self._tls:
            cert = transport.get_extra_info("peercert")
            if cert:
                self._peer = peer = peer_of(cert)
                self._peer_until = peer.not_after or 1.0  # a certificate without notAfter: lapsed
        self._client = _client_address(transport)
        transport.set_write_buffer_limits(high=self._write_high_water)
        self._rearm()

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            if self._handshake is not None and (
                not self._early_is_tls or sum(map(len, self._early)) < _MAX_EARLY_BYTES
            ):
                self._early.append(data)  # arrived during the handshake (see _start_tls)
            return  # answered for the last time, or the client is gone; the rest is not ours to read
        messages = self._messages
        was_in_head = self._in_head
        try:
            self._parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            self._stopped = True  # what follows is another protocol; the answer already says close
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if cause is None or isinstance(cause, _Stop):
                if not self._stopped:  # llhttp rejected the bytes
                    self._reject(answers.bad_request(f"malformed request: {exc}"))
            elif not isinstance(cause, Exception):
                raise cause from None  # KeyboardInterrupt and the like, raised inside a callback
            else:  # a bug of ours inside a callback: not the client's fault
                self._reject(_internal_error(cause))
        if self._in_head and was_in_head and self._messages == messages:
            # A header spread over several reads is buffered inside httptools, where
            # on_header cannot count it yet; count the reads instead.
            self._raw_head += len(data)
            if self._raw_head > self._max_head_bytes:
                self._reject(_HEADERS_TOO_LARGE)
        if self._out:
            self._flush()
        if self._queue or self._backlog or self._stopped or self._reading_paused:
            self._update_reading()
        self._rearm()

    def eof_received(self) -> bool | None:
        if self._stream_task is not None:
            # A client that stops sending during a stream is gone (a watch would wait for it forever).
            self._stream_task.cancel()
            return None
        if self._lingering or self._in_request or self._tls or not (self._queue or self._backlog):
            return None  # nothing more can be answered: let the transport close
        self._stopped = True
        self._eof = True
        return True  # keep the write side open to send what is still pending

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return  # refused at the cap, or lost in the TLS handshake (_start_tls releases it)
        self._transport = None
        self._parser = None  # the parser holds our bound methods: break the cycle now
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._backlog.clear()
        self._out.clear()
        self._chunks = None
        self._release_body()
        if self._stream_backlog is not None:
            self._stream_backlog.close()
        if self._stream_task is not None:
            self._stream_task.cancel()  # a stream may wait for its next chunk indefinitely: nobody reads it now
        # Handler tasks keep running (a PUT queued in the log must still be stored);
        # their callbacks see that the transport is gone and write nothing.
        self._ctx.release(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._stream_backlog is not None:
            self._stream_backlog.paused()
        self._update_reading()
        self._rearm()

    def resume_writing(self) -> None:
        self._write_paused = False
        backlog = self._stream_backlog
        if backlog is not None and self._transport is not None:
            backlog.resumed()
            backlog.sent(self._transport.get_write_buffer_size())
            if not self._streaming and not backlog.queued:
                backlog.close()
                self._stream_backlog = None
        if self._drained is not None:
            self._drained.set()
        self._pump()
        self._after_output()

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
        self._timer_state = _UNSET  # a new request restarts whichever deadline applies

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
        if self._peer_until and time.time() >= self._peer_until:
            self._certificate_lapsed("request")
            self._reject(CERTIFICATE_EXPIRED)
            raise _Stop
        length = self._content_length
        coding = self._transfer_encoding
        if coding is not None:
            if length is not None:
                self._reject(_AMBIGUOUS_LENGTH)
                raise _Stop
            if coding.strip().lower() != b"chunked":
                self._reject(_BAD_TRANSFER_CODING)
                raise _Stop
        elif length is not None:
            if length > self._max_body:
                self._reject(value_too_large(self._max_body))
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
                if not self._queue and not self._backlog:
                    self._send_continue()

    def on_body(self, body: bytes) -> None:
        size = self._body_size + len(body)
        if size > self._max_body:
            self._chunks = None
            self._reject(value_too_large(self._max_body))
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
            mode = _CLOSE  # llhttp parses nothing after an upgrade (or CONNECT): answer it, then close
        elif self._connection_header is not None and b"keep-alive" in self._connection_header:
            mode = _KEEP_SAID
        else:
            mode = _KEEP
        if mode == _CLOSE:
            self._stopped = True
        target = self._target
        if b"?" in target:
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
        if (
            self._backlog
            or self._unsafe_pending
            or self._write_paused
            or len(self._queue) >= self._max_pipelined
            or ((self._queue or self._streaming) and request.method not in _SAFE)
        ):
            self._backlog.append(_Held(request, mode, None))
        else:
            self._dispatch(request, mode)

    # -- answering ------------------------------------------------------------

    def _dispatch(self, request: Request, mode: int) -> None:
        """Call the handler; answer now if it answered now, else give its awaitable a slot."""
        observer = self._observer
        started = clock() if observer is not None else 0.0
        try:
            result = self._handler(request)
        except Exception as exc:
            result = _internal_error(exc)
        method = request.method
        head_only = method == b"HEAD"
        if type(result) is Response or type(result) is StreamResponse:  # an answer now (cheaper than isinstance)
            request_id = observer.answered(request, result.status, started) if observer is not None else None
            if self._queue or self._streaming:
                self._queue.append(_Slot(result, mode, head_only, request_id))
            else:
                self._send(result, mode, head_only, request_id)
            return
        slot = _Slot(None, mode, head_only, None, request, started)
        self._queue.append(slot)
        if type(result) is Deferred:  # a write waiting for the log: one callback settles and sends it
            unsafe = not head_only and method != b"GET"
            if unsafe:
                self._unsafe_pending += 1
            result.future.add_done_callback(functools.partial(self._on_settled, slot, unsafe, result.settle))
            return
        try:
            task = asyncio.ensure_future(result, loop=self._loop)  # type: ignore[arg-type]  # no answer types left
        except TypeError as exc:  # the handler returned neither a Response nor an awaitable
            slot.response = _internal_error(exc)
            return
        unsafe = not head_only and method != b"GET"
        if unsafe:
            self._unsafe_pending += 1
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._on_task_done, slot, unsafe))

    def _on_settled(
        self, slot: _Slot, unsafe: bool, settle: Callable[[asyncio.Future[Any]], Response], future: asyncio.Future[Any]
    ) -> None:
        if unsafe:
            self._unsafe_pending -= 1
        try:
            response = settle(future)
        except Exception as exc:
            response = _internal_error(exc)
        slot.response = response
        self._observe(slot, response)
        if self._transport is None or self._lingering:
            return
        queue = self._queue
        if (
            len(queue) == 1
            and not self._backlog
            and not self._streaming
            and not self._write_paused
            and not self._reading_paused
            and not self._stopped
            and not self._eof
            and not self._continue_wanted
            and not self._ctx.closing
        ):
            # The common case: the only answer pending, nothing held behind it, nothing paused. What
            # _drain_queue would do comes down to this: send, flush, and the keep-alive deadline.
            queue.pop()
            self._send(response, slot.mode, slot.head_only, slot.request_id)
            if self._out:
                self._flush()
            self._rearm()
            return
        self._drain_queue()

    def _on_task_done(self, slot: _Slot, unsafe: bool, task: asyncio.Future[Response | StreamResponse]) -> None:
        self._tasks.discard(task)
        if unsafe:
            self._unsafe_pending -= 1
        response: Response | StreamResponse
        if task.cancelled():
            response = _CANCELLED
        else:
            exc = task.exception()
            response = task.result() if exc is None else _internal_error(exc)
            if not isinstance(response, Response | StreamResponse):
                response = _internal_error(TypeError(f"the handler's awaitable returned {response!r}"))
        slot.response = response
        self._observe(slot, response)
        if self._transport is None or self._lingering:
            return
        self._drain_queue()

    def _observe(self, slot: _Slot, response: Response | StreamResponse) -> None:
        """Count an answer that waited for the log or a task, now that it is ready."""
        observer = self._observer
        request = slot.request
        if observer is not None and request is not None:
            slot.request_id = observer.answered(request, response.status, slot.started)
        slot.request = None

    def _drain_queue(self) -> None:
        """Send the finished answers at the front of the queue, then take held requests."""
        queue = self._queue
        while queue and queue[0].response is not None and not self._lingering and not self._streaming:
            ready = queue.popleft()
            self._send(ready.response, ready.mode, ready.head_only, ready.request_id)  # type: ignore[arg-type]
        self._pump()
        self._after_output()

    def _answer(self, response: Response, mode: int, head_only: bool) -> None:
        if self._queue or self._streaming:
            self._queue.append(_Slot(response, mode, head_only))
        else:
            self._send(response, mode, head_only)

    def _send(
        self, response: Response | StreamResponse, mode: int, head_only: bool, request_id: bytes | None = None
    ) -> None:
        """Serialise one response (with the request's id, if any) into the output buffer; close after the last."""
        if self._ctx.closing and mode != _CLOSE and not self._queue and not self._backlog and not self._in_request:
            mode = _CLOSE
        if isinstance(response, StreamResponse):
            self._start_stream(response, mode, head_only, b"" if request_id is None else _id_line(request_id))
            return
        extra = response.extra if request_id is None else response.extra + _id_line(request_id)
        body = response.body
        key = (response.status, response.content_type, response.headers, mode)
        head = _HEADS.get(key) or _build_head(key)
        size = len(body)
        if head_only or not size:
            if response.status == 204:  # RFC 9110 8.6: no Content-Length on a 204 (the tail's CRLF ends extra's line)
                data = _join((head, extra, self._ctx.date_tail[2:]))
            else:
                data = _join((head, extra, b"Content-Length: ", str(size).encode(), self._ctx.date_tail))
            self._out.append(data)
        elif size <= _JOIN_BODY_BYTES:
            data = _join((head, extra, b"Content-Length: ", str(size).encode(), self._ctx.date_tail, body))
            self._out.append(data)
        else:
            data = _join((head, extra, b"Content-Length: ", str(size).encode(), self._ctx.date_tail))
            self._out.append(data)
            self._out.append(body)
            self._out_size += size
        self._out_size += len(data)
        if mode == _CLOSE:
            self._finish()
        elif self._out_size >= self._write_high_water:
            self._flush()  # may call pause_writing, which holds back further requests

    def _start_stream(self, response: StreamResponse, mode: int, head_only: bool, extra: bytes) -> None:
        """Write a chunked head and send the chunks from a task; the connection closes after it.

        A stream (a watch) may never end, so nothing pipelined after it could be
        answered: its head says ``Connection: close``, no further request is parsed
        (what arrives is read and dropped, so a client that goes is still seen), and
        requests held back are dropped unhandled.
        """
        mode = _CLOSE
        self._stopped = True
        self._backlog.clear()
        self._out.append(_stream_head(response, mode, self._ctx.date_tail, extra))
        self._flush()
        self._streaming = True
        transport = self._transport
        if transport is not None and not head_only:
            backlog_bytes = self._ctx.settings.stream_backlog_bytes
            transport.set_write_buffer_limits(high=backlog_bytes)
            _limit_kernel_buffer(transport, backlog_bytes // _KERNEL_SHARE)
            if self._stream_backlog is None:
                self._stream_backlog = self._ctx.streams.open(self._cut_off)
            if self._write_paused:
                self._stream_backlog.paused()
        self._stream_task = self._loop.create_task(self._stream(response, mode, head_only))

    def _cut_off(self) -> None:
        """Drop a stream whose client stopped reading: the streams together hold too much (see _backlog)."""
        _logger.warning("stream_cut_off", client=self._client, reason="the streams' unsent bytes are over the bound")
        if self._transport is not None:
            self._transport.abort()

    def _write_chunk(self, chunk: bytes) -> None:
        """Frame and write one chunk; a large one is handed over as it is (shared, never copied)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if len(chunk) <= _JOIN_BODY_BYTES:
            pieces: tuple[bytes, ...] = (b"%x\r\n%b\r\n" % (len(chunk), chunk),)
            transport.write(pieces[0])
        else:
            pieces = (b"%x\r\n" % len(chunk), chunk, b"\r\n")
            transport.writelines(pieces)
        backlog = self._stream_backlog
        if backlog is not None:
            backlog.wrote(pieces, transport.get_write_buffer_size())

    async def _stream(self, response: StreamResponse, mode: int, head_only: bool) -> None:
        chunks = response.chunks
        try:
            if not head_only:
                async for chunk in chunks:
                    if self._transport is None:
                        return
                    if self._peer_until and time.time() >= self._peer_until:
                        self._certificate_lapsed("stream")
                        mode = _CLOSE  # ended like any stream, then the connection is closed
                        break
                    if chunk:
                        self._write_chunk(chunk)
                    while self._write_paused and self._transport is not None:
                        if self._drained is None:
                            self._drained = asyncio.Event()
                        self._drained.clear()
                        await self._drained.wait()
                if self._transport is None:
                    return
                self._out.append(b"0\r\n\r\n")
        except Exception as exc:  # a chunk cannot be followed by an error answer: cut the connection
            _logger.error("stream_failed", exc_info=exc)
            if self._transport is not None:
                self._out.clear()
                self._transport.abort()
            return
        finally:
            closing = getattr(chunks, "aclose", None)
            if closing is not None:
                await closing()
            self._streaming = False
            self._stream_task = None
            self._end_stream_backlog()
        if self._transport is None:
            return
        if mode == _CLOSE:
            self._finish()
            return
        self._drain_queue()

    def _end_stream_backlog(self) -> None:
        """The stream is over: the usual high-water mark again; its pieces count until they are sent."""
        backlog = self._stream_backlog
        transport = self._transport
        if backlog is None:
            return
        if transport is None or transport.is_closing():
            backlog.sent(0)
        else:
            transport.set_write_buffer_limits(high=self._write_high_water)
            backlog.sent(transport.get_write_buffer_size())
        if not backlog.queued:
            backlog.close()
            self._stream_backlog = None

    def _send_continue(self) -> None:
        self._continue_wanted = False
        self._out.append(_CONTINUE)
        self._out_size += len(_CONTINUE)

    def _reject(self, response: Response) -> None:
        """Answer the request being parsed with an error, in its turn, and close after it."""
        self._stopped = True
        self._in_request = False
        self._in_head = False
        self._continue_wanted = False
        self._chunks = None
        self._release_body()
        if self._observer is not None:
            self._observer.refuse(response.status)
        if self._backlog or self._write_paused:
            self._backlog.append(_Held(None, _CLOSE, response))
        else:
            self._answer(response, _CLOSE, False)
        self._after_output()

    def _release_body(self) -> None:
        """Give the request's share of the body budget back (it was refused, or its client left)."""
        if self._reserved:
            self._ctx.body_budget += self._reserved
            self._reserved = 0

    def _pump(self) -> None:
        """Answer held requests while output has room again."""
        backlog = self._backlog
        while (
            backlog
            and not self._unsafe_pending
            and not self._write_paused
            and not self._lingering
            and len(self._queue) < self._max_pipelined
        ):
            if self._queue and backlog[0].request is not None and backlog[0].request.method not in _SAFE:
                break  # a write waits for every earlier answer
            held = backlog.popleft()
            if held.rejection is not None:
                self._answer(held.rejection, _CLOSE, False)
            else:
                self._dispatch(held.request, held.mode)  # type: ignore[arg-type]
        if self._continue_wanted and not self._queue and not backlog and not self._lingering:
            self._send_continue()

    def _flush(self) -> None:
        out = self._out
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
        out.clear()
        self._out_size = 0

    def _after_output(self) -> None:
        """Flush, close a connection that has nothing left to answer, and adjust reading and timer."""
        if self._out:
            self._flush()
        transport = self._transport
        if transport is None:
            return
        if (
            (self._eof or self._ctx.closing)
            and not self._lingering
            and not self._in_request
            and not self._queue
            and not self._backlog
            and not self._streaming
        ):
            self._lingering = True
            transport.close()
        self._update_reading()
        self._rearm()

    def _finish(self) -> None:
        """The last response is in the buffer: send it and half-close."""
        self._stopped = True
        self._lingering = True
        self._queue.clear()  # only a shutdown can end the connection with answers pending; they are moot
        self._flush()
        transport = self._transport
        if transport is None:
            return
        if transport.can_write_eof() and not self._eof and not self._ctx.closing:
            transport.write_eof()  # the client reads our answer, then closes; we discard what it still sends
        else:
            transport.close()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        paused = (
            self._write_paused
            or bool(self._backlog)
            or len(self._queue) >= self._max_pipelined
            or (self._stopped and not self._lingering and not self._eof and not self._streaming)
        )
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # -- time-outs ------------------------------------------------------------

    def _rearm(self) -> None:
        """Point the timer at the deadline that applies in the current state."""
        if self._transport is None:
            return
        if self._lingering:
            state = _LINGER
        elif self._write_paused:
            state = _SEND
        elif self._reading_paused or self._queue or self._backlog or self._streaming:
            state = _BUSY  # our turn, not the client's: no deadline
        elif self._in_request:
            state = _REQUEST
        else:
            state = _IDLE
        if state == self._timer_state:
            return
        self._timer_state = state
        settings = self._ctx.settings
        if state == _IDLE:
            delay = settings.keepalive_timeout
        elif state in (_REQUEST, _SEND):
            delay = settings.request_timeout
        elif state == _LINGER:
            delay = _LINGER_SECONDS
        else:
            self._deadline = None
            return
        deadline = self._loop.time() + delay
        self._deadline = deadline
        timer = self._timer
        if timer is None or self._timer_when > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        transport = self._transport
        if transport is None or deadline is None:
            return
        if deadline > self._loop.time():
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline
            return
        state = self._timer_state
        self._deadline = None
        if state == _REQUEST:
            self._reject(_TIMEOUT)
        elif state == _IDLE:
            self._lingering = True
            self._stopped = True
            transport.close()
        else:  # a client that will not read, or will not go away
            transport.abort()

    # -- shutdown -------------------------------------------------------------

    def shutdown(self) -> None:
        """Close now if idle; otherwise finish what is in flight and close after its answer."""
        transport = self._transport
        if transport is None:
            if self._handshake is not None:
                self._handshake.cancel()  # no request yet: nothing to finish
            return
        if self._lingering:
            transport.close()
        else:
            self._after_output()

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

    def abort(self) -> None:
        """Drop the connection without waiting for anything."""
        if self._transport is not None:
            self._transport.abort()
        elif self._handshake is not None:
            self._handshake.cancel()


def _limit_kernel_buffer(transport: asyncio.BaseTransport, size: int) -> None:
    """Cap what the kernel holds unsent for this socket: for a client that does not read, it is a copy per client.

    Left alone, the send buffer autotunes to 4 MiB (``tcp_wmem``) per connection: a
    thousand watchers that never read would hold 4 GB of kernel memory, past the
    machine's TCP memory pressure point, and copying it stalls the event loop.
    ``TCP_NOTSENT_LOWAT`` bounds only the bytes not yet sent, so a reader far away
    keeps a full window in flight; where it is missing, the whole send buffer is capped.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        if _NOTSENT_LOWAT is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT, size)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _client_address(transport: asyncio.BaseTransport) -> str | None:
    """``host:port`` of the client (``[host]:port`` for IPv6), for audit lines."""
    address = transport.get_extra_info("peername")
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host = str(address[0])
    return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"


def _internal_error(exc: BaseException) -> Response:
    _logger.error("handler_failed", exc_info=exc)
    return INTERNAL_ERROR
