"""One HTTP/1.1 connection of the native server: order of answers, flow control, time-outs, streams.

Reading a request (httptools' callbacks, limits, the body budget) is the base
class's job, :class:`~tuco.http._reader.RequestReader`; the bytes of an answer
are :mod:`tuco.http._wire`'s; the TLS handshake is :class:`~tuco.http._tls.TlsStart`'s;
what connections share is the :class:`~tuco.http._context.ServerContext`.
What is left lives here, in one ``asyncio.Protocol`` with no task per request:

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
* **One timer.** Each connection owns at most one timer, on the server's
  injectable clock (:mod:`tuco.http._clock`). Moving the deadline later only
  updates a float; the timer re-arms itself when it fires early. Only a
  deadline that moves earlier replaces it.
* **Counted from accept.** Under TLS the listening socket is plain and each
  connection starts its handshake itself (``loop.start_tls``), so a connection
  counts against ``max_connections`` from the moment it is accepted, and one
  over the cap is closed before any TLS state is allocated for it. (A server
  created with ``ssl=`` tells its protocol nothing until the handshake is
  done: thousands of silent handshakes would be invisible to the cap.)
* **A stream is the last answer.** A
  :class:`~tuco.http.messages.StreamResponse` is sent by a
  :class:`~tuco.http._stream.ChunkedStream`; answers to later requests wait in
  ``_queue`` until its last chunk. Its head says ``Connection: close``, and
  what the client pipelined after it is read and dropped, never handled (its
  answer could never be sent).
* **A client certificate lapses.** Its notAfter is checked at each request's
  head (:mod:`tuco.http._reader`) and before each chunk of a stream. Past it, a
  request is answered ``401`` and the connection closed, a stream ends and the
  connection closes: an open connection never outlives its certificate (and
  the server's TLS context issues no session tickets, so none is resumed
  without a handshake).
* **Closing politely.** After the last response we half-close (``write_eof``)
  and discard what the client still sends for a moment, instead of closing a
  socket with unread data, which makes the kernel reset it and can destroy the
  error response the client has not read yet.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable
from typing import Any, Final, cast

import httptools
import structlog

from tuco.http import answers
from tuco.http._clock import Timer
from tuco.http._context import Handler, ServerContext
from tuco.http._reader import SHUTTING_DOWN, RequestReader, internal_error
from tuco.http._stream import ChunkedStream
from tuco.http._tls import TlsStart, client_address, peer_of
from tuco.http._wire import (
    CLOSE,
    CONTINUE,
    id_line,
    render,
    serialise,
    stream_head,
)
from tuco.http.messages import Deferred, Request, Response, StreamResponse
from tuco.http.observer import clock

__all__ = ["Handler", "HttpConnection", "ServerContext"]

_logger = structlog.get_logger("tuco.http")
_audit = structlog.get_logger("tuco.audit")

# Which deadline the connection's timer is measuring.
_UNSET: Final = 0
_IDLE: Final = 1
_REQUEST: Final = 2
_SEND: Final = 3
_LINGER: Final = 4
_BUSY: Final = 5

# How long to keep discarding a client's bytes after our last response.
_LINGER_SECONDS: Final = 2.0
_SAFE: Final = (b"GET", b"HEAD")  # what may run beside unanswered requests (OPTIONS and TRACE get 405 anyway)

_CANCELLED = answers.CANCELLED
_OVERLOADED = answers.TOO_MANY_CONNECTIONS
_TIMEOUT = answers.REQUEST_TIMEOUT


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


class HttpConnection(RequestReader):
    """The server side of one client connection: answers in order, flow control, time-outs, streams."""

    __slots__ = (
        "_backlog",
        "_deadline",
        "_eof",
        "_handler",
        "_handshake",
        "_lingering",
        "_loop",
        "_max_pipelined",
        "_observer",
        "_out",
        "_out_size",
        "_queue",
        "_reading_paused",
        "_stream",
        "_streaming",
        "_tasks",
        "_timer",
        "_timer_request",
        "_timer_state",
        "_timer_when",
        "_tls",
        "_transport",
        "_unsafe_pending",
        "_write_high_water",
        "_write_paused",
    )

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        settings = ctx.settings
        self._loop = ctx.loop
        self._handler = ctx.handler
        self._observer = ctx.observer
        self._max_pipelined = settings.max_pipelined
        self._write_high_water = settings.write_high_water
        self._transport: asyncio.Transport | None = None
        self._tls = False
        self._handshake: TlsStart | None = None
        # Answers in request order, requests held back, and the handlers' tasks.
        self._queue: collections.deque[_Slot] = collections.deque()
        self._backlog: collections.deque[_Held] = collections.deque()
        self._tasks: set[asyncio.Future[Response | StreamResponse]] = set()
        self._unsafe_pending = 0  # unfinished PUTs and DELETEs; later requests wait for them
        # A streamed response being sent: later answers wait in _queue until it ends.
        self._streaming = False
        self._stream: ChunkedStream | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        # Flow control and the end of the connection.
        self._write_paused = False
        self._reading_paused = False
        self._lingering = False  # the last response is written; discarding input until the client goes
        self._eof = False
        self._timer: Timer | None = None
        self._timer_when = 0.0
        self._timer_state = _UNSET
        self._timer_request = 0  # the request (_messages) the timer's state was set for: a new one restarts it
        self._deadline: float | None = None

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream server makes nothing else
        ctx = self._ctx
        if not ctx.admit(self):
            if ctx.tls is None:  # under TLS nothing can be said before a handshake we will not spend on it
                transport.write(render(SHUTTING_DOWN if ctx.closing else _OVERLOADED, CLOSE, ctx.date_tail))
            transport.close()
            self._stopped = True
            return
        if ctx.tls is not None:
            self._stopped = True  # until the handshake is done, what arrives is the TLS layer's (see data_received)
            self._handshake = TlsStart(
                self._loop, transport, self, ctx.tls, ctx.handshake_timeout, ctx.clock, self._tls_started
            )
            return
        self._start(transport)

    def _tls_started(self, transport: asyncio.Transport | None, early: bytes) -> None:
        """Serve once the handshake is done; a failed or abandoned one gives its place under the cap back."""
        self._handshake = None
        if transport is None:
            self._stopped = True
            self._ctx.release(self)
            return
        self._start(transport)
        if early:
            self.data_received(early)

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
        self._client = client_address(transport)
        transport.set_write_buffer_limits(high=self._write_high_water)
        self._rearm()

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            if self._handshake is not None:
                self._handshake.arrived(data)  # arrived during the handshake (see TlsStart)
            return  # answered for the last time, or the client is gone; the rest is not ours to read
        self._feed(data)
        if self._out:
            self._flush()
        if self._queue or self._backlog or self._stopped or self._reading_paused:
            self._update_reading()
        self._rearm()

    def eof_received(self) -> bool | None:
        if self._stream is not None and self._stream.task is not None:
            # A client that stops sending during a stream is gone (a watch would wait for it forever).
            self._stream.cancel()
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
        if self._stream is not None:
            self._stream.lost()
        # Handler tasks keep running (a PUT queued in the log must still be stored);
        # their callbacks see that the transport is gone and write nothing.
        self._ctx.release(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._stream is not None:
            self._stream.paused()
        self._update_reading()
        self._rearm()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stream is not None:
            self._stream.resumed()
        self._pump()
        self._after_output()

    # -- requests, as the reader completes them ---------------------------------

    def _received(self, request: Request, mode: int) -> None:
        """Handle a complete request now, or hold it back while output is backed up or a write is pending."""
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
            result = internal_error(exc)
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
            slot.response = internal_error(exc)
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
            response = internal_error(exc)
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
            response = task.result() if exc is None else internal_error(exc)
            if not isinstance(response, Response | StreamResponse):
                response = internal_error(TypeError(f"the handler's awaitable returned {response!r}"))
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
        if self._ctx.closing and mode != CLOSE and not self._queue and not self._backlog and not self._in_request:
            mode = CLOSE
        if isinstance(response, StreamResponse):
            self._start_stream(response, mode, head_only, b"" if request_id is None else id_line(request_id))
            return
        extra = response.extra if request_id is None else response.extra + id_line(request_id)
        self._out_size += serialise(self._out, response, mode, head_only, extra, self._ctx.date_tail)
        if mode == CLOSE:
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
        mode = CLOSE
        self._stopped = True
        self._backlog.clear()
        self._out.append(stream_head(response, mode, self._ctx.date_tail, extra))
        self._flush()
        self._streaming = True
        stream = ChunkedStream(
            self._ctx, self._transport, self._write_paused, self._client, self._stream_lapsed, self._stream_ended
        )
        self._stream = stream
        stream.start(self._ctx, response.chunks, self._out, head_only)

    def _stream_lapsed(self) -> bool:
        """Whether the client certificate expired: then the stream ends, and the connection closes."""
        if self._peer_until and self._clock.wall() >= self._peer_until:
            self._certificate_lapsed("stream")
            return True
        return False

    def _stream_ended(self, mode: int, cut: bool) -> None:
        """The stream's last chunk is in the output buffer; or, ``cut``, the stream failed or was cancelled."""
        self._streaming = False
        if cut or self._transport is None:
            return
        if mode == CLOSE:
            self._finish()
            return
        self._drain_queue()

    def _continue_if_idle(self) -> None:
        if not self._queue and not self._backlog:
            self._send_continue()

    def _send_continue(self) -> None:
        self._continue_wanted = False
        self._out.append(CONTINUE)
        self._out_size += len(CONTINUE)

    def _reject(self, response: Response) -> None:
        """Answer the request being parsed with an error, in its turn, and close after it."""
        self._abandon_request()
        if self._observer is not None:
            self._observer.refuse(response.status)
        if self._backlog or self._write_paused:
            self._backlog.append(_Held(None, CLOSE, response))
        else:
            self._answer(response, CLOSE, False)
        self._after_output()

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
                self._answer(held.rejection, CLOSE, False)
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
        if state == self._timer_state and self._timer_request == self._messages:
            return
        self._timer_state = state
        self._timer_request = self._messages
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
        deadline = self._clock.now() + delay
        self._deadline = deadline
        timer = self._timer
        if timer is None or self._timer_when > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._clock.call_at(deadline, self._on_timer)
            self._timer_when = deadline

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        transport = self._transport
        if transport is None or deadline is None:
            return
        if deadline > self._clock.now():
            self._timer = self._clock.call_at(deadline, self._on_timer)
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

    def abort(self) -> None:
        """Drop the connection without waiting for anything."""
        if self._transport is not None:
            self._transport.abort()
        elif self._handshake is not None:
            self._handshake.cancel()
