"""The request and response values both front ends exchange with the API.

A :class:`Request` holds what was received, as received: the native server
appends the header pairs httptools hands over and nothing else, and the query
string is parsed only when a handler asks for it. Responses keep their static
headers (which the native server caches rendered, by shape) apart from their
per-response fields, which stay values (``etag`` and ``revision`` as numbers,
others as pairs) until a front end renders them: the native server as header
lines in one formatting operation, ASGI and serverless as header pairs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import unquote_to_bytes

if TYPE_CHECKING:
    from tuco.core.tokens import Principal, TokenRecord
    from tuco.http._tls import Peer

__all__ = ["KEY_ROUTE", "NO_ROUTE", "Answer", "Deferred", "Request", "Response", "Settling", "StreamResponse"]

KEY_ROUTE: Final = "/v1/key/{key}"
"""The route of nearly every request: a request's ``route`` until the API says otherwise."""
NO_ROUTE: Final = "none"
"""The ``route`` of a request whose path no route matches."""

Headers = tuple[tuple[bytes, bytes], ...]


class Request:
    """One HTTP request: method, raw path, raw query, headers as received, body, TLS peer identity, client address."""

    __slots__ = (
        "_client",
        "_params",
        "authorization",
        "body",
        "caller",
        "conditional",
        "headers",
        "method",
        "path",
        "peer",
        "principal",
        "query",
        "request_id",
        "route",
    )

    def __init__(
        self,
        method: bytes,
        path: bytes,
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        peer: Peer | None = None,
        conditional: bool | None = None,
        client: str | tuple[str, int] | None = None,
        authorization: bytes | EllipsisType | None = ...,
        request_id: bytes | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers: list[tuple[bytes, bytes]] = headers if headers is not None else []
        self.body = body
        self.peer = peer
        self._client = client
        if conditional is None:
            conditional = any(len(name) in (8, 13) and name.lower() in _CONDITIONS for name, _ in self.headers)
        self.conditional = conditional
        """Whether ``If-Match`` or ``If-None-Match`` was sent: the native server notes it while parsing,
        so an unconditional write never scans its headers for them."""
        if authorization is ...:
            authorization = None
            for name, value in self.headers:
                if len(name) == 13 and name.lower() == b"authorization":
                    authorization = value
                    break
        self.authorization = authorization
        """The first ``Authorization`` header's value: the native server notes it while parsing."""
        self.request_id = request_id
        """The first ``X-Request-Id`` header's value, as sent (the front end checks it before echoing it)."""
        self.route = KEY_ROUTE
        """The pattern of the route that answered, for metrics; the API sets it for every other route."""
        self.principal: Principal | None = None
        """Who the request acts as, set by the guard where it matters (leases); None with authentication off."""
        self.caller: TokenRecord | None = None
        """The credential the guard authorized the request by (its grants, its id); None with authentication off,
        where a handler may do anything (:func:`~tuco.http.handlers.may`)."""
        self._params: dict[bytes, bytes] | None = None

    @property
    def client(self) -> str | None:
        """The client's address (``host:port``), for the audit log; None where the front end does not know it.

        An ASGI server's ``(host, port)`` is formatted only when asked: an answer rarely needs it.
        """
        client = self._client
        if client is None or isinstance(client, str):
            return client
        return f"{client[0]}:{client[1]}"

    @classmethod
    def from_target(
        cls, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b""
    ) -> Request:
        """A request from a raw target (path with its query string)."""
        path, _, query = target.partition(b"?")
        return cls(method, path, query, headers, body)

    def header(self, name: bytes) -> bytes | None:
        """The value of the first header called ``name`` (lower case), compared case-insensitively."""
        size = len(name)
        for key, value in self.headers:
            if len(key) == size and key.lower() == name:
                return value
        return None

    def header_count(self, name: bytes) -> int:
        """How many headers called ``name`` (lower case) were received."""
        size = len(name)
        return sum(1 for key, _ in self.headers if len(key) == size and key.lower() == name)

    def param(self, name: bytes) -> bytes | None:
        """The percent-decoded value of the first query parameter ``name``; parsed on first use."""
        params = self._params
        if params is None:
            params = self._params = {}
            if self.query:
                for pair in self.query.split(b"&"):
                    if not pair:
                        continue
                    raw_name, _, raw_value = pair.partition(b"=")
                    key = _unquote(raw_name)
                    if key not in params:
                        params[key] = _unquote(raw_value)
        return params.get(name)

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.path!r}, {self.query!r})"


_CONDITIONS: Final = (b"if-match", b"if-none-match")


def _unquote(raw: bytes) -> bytes:
    raw = raw.replace(b"+", b" ") if raw.find(b"+") >= 0 else raw  # not ``in``: see tuco.http.api
    return unquote_to_bytes(raw) if raw.find(b"%") >= 0 else raw


class Response:
    """Status, body, and header fields as values: each front end renders them its own way.

    ``headers`` are a response shape's static fields (the native server caches the head
    they make); ``etag`` and ``revision`` are the numbers nearly every answer carries
    (``ETag: "n"``, ``X-Tuco-Revision: n``, in that order), ``created`` and ``version``
    a key read's ``X-Tuco-Create-Revision`` and ``X-Tuco-Version`` (sent with an
    ``etag`` only); ``fields`` are any other per-response fields (a deadline, a
    wait's outcome, Retry-After), after those.
    """

    __slots__ = ("body", "content_type", "created", "etag", "fields", "headers", "revision", "status", "version")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: bytes | None = None,
        headers: Headers = (),
        etag: int | None = None,
        revision: int | None = None,
        created: int | None = None,
        version: int | None = None,
        fields: Headers = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.etag = etag
        """The key's mod_revision, sent as ``ETag: "n"``; None for none."""
        self.revision = revision
        """The store's revision the answer reflects, sent as ``X-Tuco-Revision``; None for none."""
        self.created = created
        """A read key's create_revision (``X-Tuco-Create-Revision``); None for none."""
        self.version = version
        """A read key's version (``X-Tuco-Version``), given with ``created``."""
        self.fields = fields
        """Further per-response fields, made by tuco itself (never from client input)."""

    def dynamic_headers(self) -> list[tuple[bytes, bytes]]:
        """``etag``, ``revision`` and ``fields`` as header pairs, in the order they are sent."""
        pairs: list[tuple[bytes, bytes]] = []
        if self.etag is not None:
            pairs.append((b"ETag", b'"%d"' % self.etag))
        if self.revision is not None:
            pairs.append((b"X-Tuco-Revision", b"%d" % self.revision))
        if self.created is not None:
            pairs.append((b"X-Tuco-Create-Revision", b"%d" % self.created))
            pairs.append((b"X-Tuco-Version", b"%d" % (self.version or 0)))
        pairs.extend(self.fields)
        return pairs

    def all_headers(self) -> list[tuple[bytes, bytes]]:
        """The static headers, then the dynamic ones, as pairs (serverless sends these)."""
        return [*self.headers, *self.dynamic_headers()]

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:40]!r})"


class StreamResponse:
    """A response whose body is produced over time: chunked on the native server, ``more_body`` on ASGI."""

    __slots__ = ("chunks", "content_type", "headers", "status")

    def __init__(
        self, status: int, chunks: AsyncIterator[bytes], content_type: bytes | None = None, headers: Headers = ()
    ) -> None:
        self.status = status
        self.chunks = chunks
        self.content_type = content_type
        self.headers = headers

    def __repr__(self) -> str:
        return f"StreamResponse({self.status})"


class Settling(Protocol):
    """What a write hands back while the log decides: an ``asyncio.Future``, or the group commit's ``Written``."""

    def add_done_callback(self, callback: Callable[[Any], object], /) -> None: ...

    def result(self) -> Any: ...

    def exception(self) -> BaseException | None: ...

    def cancelled(self) -> bool: ...

    def __await__(self) -> Generator[Any, None, Any]: ...


class Deferred:
    """An answer that waits for the log: the write's outcome, and how it becomes a response.

    The native server chains ``settle`` to the outcome with one callback (no
    second future, no task per write; the group commit calls it in its
    batch's pass); everyone else simply awaits it.
    """

    __slots__ = ("future", "settle")

    def __init__(self, future: Settling, settle: Callable[[Any], Response]) -> None:
        self.future = future
        self.settle = settle

    def __await__(self) -> Generator[Any, None, Response]:
        return self._outcome().__await__()

    async def _outcome(self) -> Response:
        with contextlib.suppress(Exception):  # settle turns its exception into the answer; cancellation propagates
            await self.future
        return self.settle(self.future)

    def __repr__(self) -> str:
        return f"Deferred({self.future!r})"


Answer = Response | StreamResponse | Deferred | Awaitable[Response | StreamResponse]
"""What a handler returns: a response now, or an awaitable of one."""
