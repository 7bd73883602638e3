"""The API as an ASGI application, over the same request handling as the native server.

Embeds tuco in any ASGI server and lets tests run it in-process through
``httpx.ASGITransport``. The body is read incrementally and refused with 413
as soon as it passes the limit, so an oversized upload never sits in memory.

Per request the app does what ASGI itself costs and little more: one pass over
the scope's headers, no ``receive()`` for a read HTTP/1 says has no body, the
static part of each response head built once per shape, and the two messages a
response takes sent straight from the request's coroutine.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

import structlog

from tuco.http._fast import asgi_read_headers as _read_headers
from tuco.http._fast import find_byte as _find_byte
from tuco.http.answers import INTERNAL_ERROR, SERVER_BUSY, STARTING, txn_body_too_large, value_too_large
from tuco.http.api import KeyValueAPI
from tuco.http.messages import Deferred, Request, Response, StreamResponse
from tuco.http.observer import RequestObserver, clock
from tuco.service import Service

__all__ = ["ASGIApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_logger = structlog.get_logger("tuco.http")


class _BodyTooLargeError(Exception):
    pass


class _ClientGoneError(Exception):
    """The client disconnected before its body was complete: the request never happened."""


class _BudgetExceededError(Exception):
    """The body would take the bodies being received over the shared budget."""


class _BodyBudget:
    """Bytes of request bodies being received, all requests of one app together, against one limit."""

    __slots__ = ("free",)

    def __init__(self, limit: int) -> None:
        self.free = limit

    def take(self, size: int) -> None:
        if size > self.free:
            raise _BudgetExceededError
        self.free -= size

    def give(self, size: int) -> None:
        self.free += size


class ASGIApp:
    """An ASGI 3 application serving one :class:`~tuco.service.Service`.

    With ``service_factory`` the service is built and replayed on lifespan
    start-up and closed on shutdown; a ready-made ``service`` is used as is
    (its owner starts and closes it), with ``api`` over it if given. Answers
    are counted in the service's metrics; ``access_log`` logs each one with
    its ``X-Request-Id`` (which the factory may set before it returns).
    """

    def __init__(
        self,
        service: Service | None = None,
        *,
        service_factory: Callable[[], Service] | None = None,
        api: KeyValueAPI | None = None,
        access_log: bool = False,
    ) -> None:
        if (service is None) == (service_factory is None):
            raise TypeError("pass exactly one of service or service_factory")
        if api is not None and api.service is not service:
            raise TypeError("api must serve the service given")
        self.service = service
        self._service_factory = service_factory
        self._budget: _BodyBudget | None = None
        self._api: KeyValueAPI | None = api or (KeyValueAPI(service) if service is not None else None)
        self.access_log = access_log
        self._observer: RequestObserver | None = (
            RequestObserver(service.metrics, access_log=access_log) if service is not None else None
        )

    @property
    def body_bytes_reserved(self) -> int:
        """Bytes of the shared body budget held by requests whose bodies are still being received."""
        if self._budget is None or self.service is None:
            return 0
        return self.service.limits.max_buffered_bytes - self._budget.free

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request, or run the lifespan protocol.

        The request is handled right here rather than in a method this one
        awaits: a coroutine less per request, measurable under uvicorn.
        """
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        api = self._api
        if api is None:
            await _send(send, STARTING, head=False)
            return
        budget = self._budget
        if budget is None:
            budget = self._budget = _BodyBudget(api.limits.max_buffered_bytes)
        text = scope["method"]
        method = _METHODS.get(text) or text.encode()
        path = scope.get("raw_path") or scope["path"].encode()
        find = _find_byte
        # Some servers put the query in raw_path too (bytes.find, not ``in``: see tuco.http.api).
        if (find(path, 0x3F) if find is not None else path.find(b"?")) >= 0:
            path = path.partition(b"?")[0]
        headers = scope.get("headers") or []
        # One pass over the headers for everything the request path needs of them; names are lower case in
        # ASGI, but a server may not lower them, so a name of the right length is lowered before comparing.
        length: bytes | None = None
        chunked = conditional = False
        authorization: bytes | None = None
        request_id: bytes | None = None
        for name, value in headers:
            size = len(name)
            if size == 14:
                if length is None and name.lower() == b"content-length":
                    length = value
            elif size == 13:
                lowered = name.lower()
                if lowered == b"authorization":
                    if authorization is None:
                        authorization = value
                elif lowered == b"if-none-match":
                    conditional = True
            elif size == 17:
                chunked = chunked or name.lower() == b"transfer-encoding"
            elif size == 8:
                conditional = conditional or name.lower() == b"if-match"
            elif size == 12 and request_id is None and name.lower() == b"x-request-id":
                request_id = value
        if length is None and not chunked and method in _READS and scope.get("http_version") in _HTTP1:
            # HTTP/1 says this request has no body, and a read does nothing a gone client could regret: answer
            # without waiting for the one http.request message (a disconnect shows when the answer is sent).
            body = b""
        else:
            txn = path.startswith(b"/v1/txn")
            limit = api.limits.txn_body_bytes if txn else api.limits.max_value_bytes
            try:
                body = await _read_body(receive, length, limit, budget)
            except _BodyTooLargeError:
                too_large = txn_body_too_large(limit) if txn else value_too_large(limit)
                await _send(send, self._refusal(api, too_large, headers), head=False)
                return
            except _BudgetExceededError:
                await _send(send, self._refusal(api, SERVER_BUSY, headers), head=False)
                return
            except _ClientGoneError:
                return  # a partial body is not a value: store nothing, and there is no one to answer
        request = Request(
            method,
            path,
            scope.get("query_string", b""),
            headers if type(headers) is list else list(headers),
            body,
            None,  # no certificate identity: see _peer_unknown
            conditional,
            scope.get("client") or None,  # (host, port), formatted only if a log line asks (Request.client)
            authorization,
            request_id,
        )
        observer = self._observer
        started = clock()
        try:
            result = api.handle(request)
            if type(result) is Response:  # a read: answered at once, nearly every request
                response: Response | StreamResponse = result
            elif type(result) is Deferred:  # a write: its future awaited here, without Deferred's coroutine
                with contextlib.suppress(Exception):  # settle turns the write's exception into the answer
                    await result.future
                response = result.settle(result.future)
            else:
                response = await result if inspect.isawaitable(result) else result
        except Exception:
            _logger.exception("handler_failed", method=text, path=scope["path"])
            response = INTERNAL_ERROR
        echoed = observer.answered(request, response.status, started) if observer is not None else None
        if isinstance(response, StreamResponse):
            await _send_stream(send, response, head=method == b"HEAD", receive=receive, request_id=echoed)
            return
        head = _head(response)
        if echoed is not None:
            head.append((_REQUEST_ID, echoed))
        # The two messages every response takes, sent from here rather than through _send: a coroutine less.
        await send({"type": "http.response.start", "status": response.status, "headers": head})
        await send({"type": "http.response.body", "body": b"" if method == b"HEAD" else response.body})

    def _refusal(self, api: KeyValueAPI, response: Response, headers: Iterable[tuple[bytes, bytes]]) -> Response:
        """A refusal made here, before the API: counted, and with the CORS fields every answer has."""
        if self._observer is not None:
            self._observer.refuse(response.status)
        return response if api.cors is None else api.cors.refusal(response, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._service_factory is not None:
                        self.service = self._service_factory()
                        self._api = KeyValueAPI(self.service)
                        self._observer = RequestObserver(self.service.metrics, access_log=self.access_log)
                        stats = await self.service.start()
                        _logger.info("replay_finished", events=stats.events, keys=stats.keys, seconds=stats.seconds)
                except Exception as exc:
                    _logger.error("start_failed", error=str(exc))
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._service_factory is not None and self.service is not None:
                    await self.service.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


_METHODS: Final = {name: name.encode() for name in ("GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "OPTIONS")}
_READS: Final = (b"GET", b"HEAD")
_HTTP1: Final = ("1.1", "1.0")


async def _read_body(receive: Receive, length: bytes | None, limit: int, budget: _BodyBudget) -> bytes:
    """The whole body, within the value limit and the shared budget (a declared length is reserved up front)."""
    reserved = 0
    if length is not None and length.isdigit():
        declared = int(length)
        if declared > limit:
            raise _BodyTooLargeError
        budget.take(declared)
        reserved = declared
    try:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGoneError
        body: bytes = message.get("body", b"")
        size = len(body)
        if size > limit:
            raise _BodyTooLargeError
        if size > reserved:
            budget.take(size - reserved)
            reserved = size
        if not message.get("more_body", False):
            return body  # the whole body in one message, as a small body nearly always comes
        chunks = [body]
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGoneError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLargeError
            if size > reserved:
                budget.take(size - reserved)
                reserved = size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    finally:
        budget.give(reserved)


# _peer_unknown: the ASGI TLS extension names a client only by its subject as one RFC 4514 string
# (``client_cert_name``): no SANs by kind, several CNs indistinguishable from one, no notAfter to stop
# honouring it at. Certificate identities are therefore tuco serve's alone; under an ASGI server a
# client authenticates with a bearer token (the server may still require a client certificate).


_CONTENT_LENGTH: Final = b"content-length"
_REQUEST_ID: Final = b"x-request-id"
_CONTENT_TYPE: Final = b"content-type"
_STATIC: Final[dict[tuple[bytes | None, tuple[tuple[bytes, bytes], ...]], list[tuple[bytes, bytes]]]] = {}
"""The type and static header pairs of each response shape, names lowered, built once (a handful of shapes)."""


def _static_headers(content_type: bytes | None, headers: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    pairs = [] if content_type is None else [(_CONTENT_TYPE, content_type)]
    pairs.extend((name.lower(), value) for name, value in headers)
    if len(_STATIC) < 256:  # the shapes are tuco's own; the bound only guards against a handler's surprise
        _STATIC[content_type, headers] = pairs
    return pairs


def _head(response: Response) -> list[tuple[bytes, bytes]]:
    """The header pairs of ``response``'s start message: length, type, static headers, then the dynamic ones."""
    content_type, static = response.content_type, response.headers
    pairs = _STATIC.get((content_type, static))
    if pairs is None:
        pairs = _static_headers(content_type, static)
    etag, revision, created, version = response.etag, response.revision, response.created, response.version
    render = _read_headers  # a key's read, the commonest answer, in C in the compiled build
    if (
        render is not None
        and created is not None
        and version is not None
        and etag is not None
        and revision is not None
        and not response.fields
        and response.status != 204
    ):
        try:
            return render(pairs, len(response.body), etag, revision, created, version)
        except (OverflowError, TypeError):
            pass  # an int over 64 bits: rendered below
    # A 204 has no Content-Length (RFC 9110 8.6).
    headers = [(_CONTENT_LENGTH, b"%d" % len(response.body)), *pairs] if response.status != 204 else pairs.copy()
    if etag is not None:
        headers.append((b"etag", b'"%d"' % etag))
    if revision is not None:
        headers.append((b"x-tuco-revision", b"%d" % revision))
    if created is not None:
        headers.append((b"x-tuco-create-revision", b"%d" % created))
        headers.append((b"x-tuco-version", b"%d" % (version or 0)))
    for name, value in response.fields:
        headers.append((name.lower(), value))
    return headers


async def _send(send: Send, response: Response | StreamResponse, *, head: bool) -> None:
    if isinstance(response, StreamResponse):
        await _send_stream(send, response, head=head)
        return
    await send({"type": "http.response.start", "status": response.status, "headers": _head(response)})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def _send_stream(
    send: Send,
    response: StreamResponse,
    *,
    head: bool,
    receive: Receive | None = None,
    request_id: bytes | None = None,
) -> None:
    """Send the chunks as they come; a client that disconnects ends the stream (a watch would wait forever)."""
    headers = [] if response.content_type is None else [(b"content-type", response.content_type)]
    headers.extend((name.lower(), value) for name, value in response.headers)
    if request_id is not None:
        headers.append((_REQUEST_ID, request_id))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    chunks = response.chunks
    gone = asyncio.ensure_future(_disconnected(receive)) if receive is not None else None
    try:
        if not head:
            while True:
                following = asyncio.ensure_future(anext(chunks))
                if gone is not None:
                    await asyncio.wait((following, gone), return_when=asyncio.FIRST_COMPLETED)
                    if not following.done():
                        following.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await following
                        return
                try:
                    chunk = await following
                except StopAsyncIteration:
                    break
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        if gone is not None:
            gone.cancel()
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            await closing()
    await send({"type": "http.response.body", "body": b""})


async def _disconnected(receive: Receive | None) -> None:
    """Return once the client is gone (the request body was already read whole)."""
    while receive is not None:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
