"""One HTTP/1.1 connection of the native server: the transport, TLS start, streams and shutdown.

The connection is one ``asyncio.Protocol`` with no task per request, composed
of named pieces along one base-class chain (a method call through a base class
costs nothing more than one of the class's own):

* :class:`~tuco.http._reader.RequestReader` reads requests: httptools'
  callbacks, limits, the body budget;
* :class:`~tuco.http._order.AnswerOrder` answers them in request order, a write
  before what follows it, with requests held back while output is backed up,
  and gathers one read's answers into one write;
* :class:`~tuco.http._timing.Timing` is flow control (when reading pauses) and
  the connection's one timer (keep-alive, request, send and linger time-outs);
* :class:`HttpConnection`, here, owns the transport and what is left.

The bytes of an answer are :mod:`tuco.http._wire`'s; the TLS handshake is
:class:`~tuco.http._tls.TlsStart`'s; what connections share is the
:class:`~tuco.http._context.ServerContext`.

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
from typing import cast

import httptools

from tuco.http import answers
from tuco.http._context import Handler, ServerContext
from tuco.http._reader import SHUTTING_DOWN
from tuco.http._stream import ChunkedStream
from tuco.http._timing import Timing
from tuco.http._tls import TlsStart, client_address, peer_of
from tuco.http._wire import CLOSE, render, stream_head
from tuco.http.messages import StreamResponse

__all__ = ["Handler", "HttpConnection", "ServerContext"]

_OVERLOADED = answers.TOO_MANY_CONNECTIONS


class HttpConnection(Timing):
    """The server side of one client connection: the transport, TLS start, streams and shutdown."""

    __slots__ = ("_handshake", "_stream", "_tls")

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self._tls = False
        self._handshake: TlsStart | None = None
        self._stream: ChunkedStream | None = None

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
        # RequestReader's reading, inlined (a call less per read); its rare paths stay there.
        messages = self._messages
        was_in_head = self._in_head
        try:
            self._parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            self._stopped = True  # what follows is another protocol; the answer already says close
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
        if self._in_head and was_in_head and self._messages == messages:
            self._head_spread(len(data))
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
        self._stop_timer()
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

    # -- streams ------------------------------------------------------------

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
