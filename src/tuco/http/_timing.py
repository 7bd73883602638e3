"""Flow control and time-outs of a native connection: when to read, and the one timer.

:class:`Timing` is the base class of :class:`~tuco.http.connection.HttpConnection`
above :class:`~tuco.http._order.AnswerOrder`, a named piece of the connection
(uvicorn's ``FlowControl``), not an object of its own, so a call costs no
extra attribute load.

* **Bounded memory.** httptools parses all of a read before returning, so
  pausing the transport alone would still let one 256 KiB read of tiny GETs
  produce thousands of responses. Reading is paused while writing is, while
  requests wait in the backlog, or while ``max_pipelined`` answers are
  pending (:meth:`Timing._update_reading`): what is held is bounded by what
  was already read plus ``max_pipelined`` responses plus the transport's
  high-water mark.
* **One timer.** Each connection owns at most one timer, on the server's
  injectable clock (:mod:`tuco.http._clock`). Moving the deadline later only
  updates a float; the timer re-arms itself when it fires early. Only a
  deadline that moves earlier replaces it.
* **Which deadline.** Idle between requests: the keep-alive time-out. Inside a
  request, or blocked on a client that does not read: the request time-out.
  After the last response: a moment of lingering. While it is our turn (an
  answer pending, a stream): none.
"""

from __future__ import annotations

from typing import Final

from tuco.http import answers
from tuco.http._clock import Timer
from tuco.http._context import ServerContext
from tuco.http._order import AnswerOrder

__all__ = ["Timing"]

# Which deadline the connection's timer is measuring.
_UNSET: Final = 0
_IDLE: Final = 1
_REQUEST: Final = 2
_SEND: Final = 3
_LINGER: Final = 4
_BUSY: Final = 5

# How long to keep discarding a client's bytes after our last response.
_LINGER_SECONDS: Final = 2.0

_TIMEOUT = answers.REQUEST_TIMEOUT


class Timing(AnswerOrder):
    """Pauses and resumes reading, closes what has nothing left to answer, and keeps the connection's deadline."""

    __slots__ = ("_deadline", "_timer", "_timer_request", "_timer_state", "_timer_when")

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self._timer: Timer | None = None
        self._timer_when = 0.0
        self._timer_state = _UNSET
        self._timer_request = 0  # the request (_messages) the timer's state was set for: a new one restarts it
        self._deadline: float | None = None

    # -- flow control -----------------------------------------------------------

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

    def _stop_timer(self) -> None:
        """The connection is gone: call its timer off."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
