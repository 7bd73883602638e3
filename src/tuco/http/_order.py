"""The order of a native connection's answers: pipelined requests answered in turn, writes first, memory bounded.

:class:`AnswerOrder` sits between the reader (:class:`~tuco.http._reader.RequestReader`,
which hands it each complete request) and the connection
(:class:`~tuco.http.connection.HttpConnection`, which owns the transport, the
TLS start and streams). It is a base class, not an object of its own, so its
methods cost a connection no attribute load per call.

* **Order.** Responses leave in request order. A synchronous answer (a GET)
  is written at once when nothing is ahead of it; otherwise it takes a
  :class:`_Slot` in ``_queue`` behind the awaitable answers (a PUT waiting for
  the log), and the queue is drained from the front as they complete.
* **Writes come first.** A request after an unfinished PUT or DELETE on the
  same connection is not handled until that write is done, and a PUT or DELETE
  after an unanswered request waits for its answer (RFC 9112 lets only safe
  requests run in parallel), so a pipelined PUT then GET reads the write.
* **Held back.** Requests parsed while output is backed up (writing paused, or
  ``max_pipelined`` answers pending) wait unanswered in ``_backlog`` as
  :class:`_Held`; :meth:`AnswerOrder._pump` takes them when there is room.
* **One write per read.** Responses produced while handling one read are
  gathered in ``_out`` and written with one call (:meth:`AnswerOrder._flush`).

What happens after output (flow control, the timer) is
:class:`~tuco.http._timing.Timing`'s; a stream is the connection's. Both are
reached through the hooks at the end of :class:`AnswerOrder`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable
from typing import Any, Final

from tuco.http import answers
from tuco.http._context import ServerContext
from tuco.http._reader import RequestReader, internal_error
from tuco.http._wire import CLOSE, CONTINUE, id_line, serialise
from tuco.http.messages import Deferred, Request, Response, StreamResponse
from tuco.http.observer import clock

__all__ = ["AnswerOrder"]

_SAFE: Final = (b"GET", b"HEAD")  # what may run beside unanswered requests (OPTIONS and TRACE get 405 anyway)

_CANCELLED: Final = answers.CANCELLED


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


class AnswerOrder(RequestReader):
    """Answers a connection's requests in order: the queue of slots, the backlog, the output buffer."""

    __slots__ = (
        "_backlog",
        "_eof",
        "_handler",
        "_lingering",
        "_loop",
        "_max_pipelined",
        "_observer",
        "_out",
        "_out_size",
        "_queue",
        "_reading_paused",
        "_streaming",
        "_tasks",
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
        # Answers in request order, requests held back, and the handlers' tasks.
        self._queue: collections.deque[_Slot] = collections.deque()
        self._backlog: collections.deque[_Held] = collections.deque()
        self._tasks: set[asyncio.Future[Response | StreamResponse]] = set()
        self._unsafe_pending = 0  # unfinished PUTs and DELETEs; later requests wait for them
        # A streamed response being sent: later answers wait in _queue until it ends.
        self._streaming = False
        self._out: list[bytes] = []
        self._out_size = 0
        # Flow control and the end of the connection.
        self._write_paused = False
        self._reading_paused = False
        self._lingering = False  # the last response is written; discarding input until the client goes
        self._eof = False

    # -- requests, as the reader completes them ---------------------------------

    def _received(self, request: Request, mode: int, held: bool = False) -> None:
        """Call the handler; answer now if it answered now, else give its awaitable a slot.

        A request is held back instead while output is backed up or a write is pending; ``held``: it was, and its
        turn has come (:meth:`_pump`). One method, not a check calling a dispatcher: a call less per request.
        """
        queue = self._queue
        if not held and (
            self._backlog
            or self._unsafe_pending
            or self._write_paused
            or len(queue) >= self._max_pipelined
            or ((queue or self._streaming) and request.method not in _SAFE)
        ):
            self._backlog.append(_Held(request, mode, None))
            return
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
            if queue or self._streaming:
                queue.append(_Slot(result, mode, head_only, request_id))
            elif request_id is None and mode != CLOSE and type(result) is Response and not self._ctx.closing:
                # What _send does with a plain keep-alive answer, inlined: the GET path's common case.
                self._out_size += serialise(self._out, result, mode, head_only, b"", self._ctx.date_tail)
                if self._out_size >= self._write_high_water:
                    self._flush()  # may call pause_writing, which holds back further requests
            else:
                self._send(result, mode, head_only, request_id)
            return
        slot = _Slot(None, mode, head_only, None, request, started)
        queue.append(slot)
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
        more = b"" if request_id is None else id_line(request_id)
        self._out_size += serialise(self._out, response, mode, head_only, more, self._ctx.date_tail)
        if mode == CLOSE:
            self._finish()
        elif self._out_size >= self._write_high_water:
            self._flush()  # may call pause_writing, which holds back further requests

    def _continue_if_idle(self) -> None:
        if not self._queue and not self._backlog:
            self._send_continue()

    def _send_continue(self) -> None:
        self._continue_wanted = False
        self._out.append(CONTINUE)
        self._out_size += len(CONTINUE)

    def _reject(self, response: Response) -> None:
        """Answer the request being parsed with an error, in its turn, and close after it."""
        cors = self._ctx.cors
        if cors is not None:  # the headers read so far are this request's only while it is being read
            response = cors.refusal(response, self._headers if self._in_request else ())
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
                self._received(held.request, held.mode, True)  # type: ignore[arg-type]
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

    # -- what Timing and the connection implement -------------------------------

    def _after_output(self) -> None:
        """Flush, close a connection that has nothing left to answer, and adjust reading and timer."""
        raise NotImplementedError

    def _rearm(self) -> None:
        """Point the timer at the deadline that applies in the current state."""
        raise NotImplementedError

    def _start_stream(self, response: StreamResponse, mode: int, head_only: bool, extra: bytes) -> None:
        """Write a chunked head and send the chunks from a task; the connection closes after it."""
        raise NotImplementedError
