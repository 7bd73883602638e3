"""AWS Lambda handlers behind API Gateway: the whole API in one function, or one function per method.

``tuco.serverless.handler`` answers every route; ``get_key``, ``put_key`` and
``delete_key`` are the book's shape, one function per method of
``/v1/key/{key}``. Both payload formats are read: REST APIs (1.0) and HTTP
APIs (2.0), told apart by the event's ``version``.

A direct adapter, not Mangum over the ASGI app: Mangum runs the ASGI lifespan
(start-up and shut-down) around every invocation, which would open and close
the database pool each time, and it translates the event into ASGI messages
only for the ASGI app to translate them back into the same
:class:`~tuco.http.messages.Request` this module builds directly. Here the
service, its pool and its cache are built on the first invocation of a
container and kept for the warm ones; each invocation runs the event loop only
until its answer is ready, so nothing runs while the function is frozen.

The service is a :class:`~tuco.cache.ReadThroughService` that follows no
change feed (a frozen function could not): reads go to the database, unless
``TUCO_CACHE_MAX_STALENESS_SECONDS`` lets a warm container answer a key it
read that recently; the keys with a deadline and the leases are re-read before
a request that needs them. No expirer runs here: keys past their deadline are
never answered, and their DELETE events are written by a replica's expirer
(any ``tuco serve``, full or cache) if one runs.

API Gateway buffers whole responses, so a Server-Sent Events watch cannot
work behind it (501 ``streaming_unsupported``); the long poll
(``GET /v1/key/{k}?wait_revision=N&timeout=20s``) does, within the gateway's
own time limit (29 s for REST APIs, 30 s for HTTP APIs). Headers, including
``Authorization``, reach the API as the gateway passed them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog

from tuco.assembly import build_service
from tuco.cache import ReadThroughService
from tuco.config import load_settings
from tuco.errors import InvalidBodyError, StreamingUnsupportedError, TucoError
from tuco.http.answers import INTERNAL_ERROR, error_answer, error_response, value_too_large
from tuco.http.api import KeyValueAPI
from tuco.http.messages import Request, Response, StreamResponse
from tuco.observability import configure_logging
from tuco.service import Service

__all__ = ["Container", "delete_key", "get_key", "handler", "put_key"]

Event = Mapping[str, Any]
Answer = dict[str, Any]

_logger = structlog.get_logger("tuco")
_KEY_PREFIX = b"/v1/key/"
_TEXT_TYPES = (b"application/json", b"text/")
_GET = frozenset((b"GET", b"HEAD"))


class Container:
    """What one Lambda container keeps between invocations: its event loop, the service, the API.

    Built on the first invocation (the cold start) from ``TUCO_*`` settings;
    a start-up that fails is retried by the next invocation.
    """

    def __init__(self, service: Service | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self._service = service
        self.api: KeyValueAPI | None = None
        self.started_at = 0.0
        self.invocations = 0

    def invoke(self, event: Event, allowed: frozenset[bytes] | None = None) -> Answer:
        """Answer one API Gateway event (``allowed``: the methods of a per-method function)."""
        self.invocations += 1
        return self.loop.run_until_complete(self._answer(event, allowed))

    def close(self) -> None:
        """Close the service and the loop (tests; Lambda just freezes and discards containers)."""
        if self.api is not None:
            self.loop.run_until_complete(self.api.service.aclose())
            self.api = None
        self.loop.close()

    async def _start(self) -> KeyValueAPI:
        if self.api is None:
            started = time.perf_counter()
            service = self._service
            if service is None:
                settings = load_settings()
                configure_logging(settings.log_level, settings.log_format)
                service = build_service(settings, serverless=True)
            await service.start()
            self._service = service
            self.api = KeyValueAPI(service)
            self.started_at = time.perf_counter() - started
            _logger.info("function_ready", seconds=round(self.started_at, 3))
        return self.api

    async def _answer(self, event: Event, allowed: frozenset[bytes] | None) -> Answer:
        v2 = event.get("version") == "2.0"
        try:
            api = await self._start()
        except TucoError as exc:
            _logger.error("start_failed", error=exc.code, message=str(exc))
            self._service = None
            return _render(error_answer(exc), v2, head=False)
        try:
            request = request_of(event)
        except TucoError as exc:
            return _render(error_answer(exc), v2, head=False)
        head = request.method == b"HEAD"
        if allowed is not None:
            refused = _outside(request, allowed)
            if refused is not None:
                return _render(refused, v2, head)
        if len(request.body) > api.limits.max_value_bytes:
            return _render(value_too_large(api.limits.max_value_bytes), v2, head)
        if request.path == b"/v1/watch" and request.method == b"GET":
            return _render(error_answer(_NO_STREAMING), v2, head)
        try:
            service = api.service
            if isinstance(service, ReadThroughService) and (service.access.enabled or _needs_leases(request)):
                await service.refresh()  # with tokens on, every request: a revocation elsewhere counts at once
            answer = api.handle(request)
            response = answer if isinstance(answer, Response | StreamResponse) else await answer
        except TucoError as exc:
            response = error_answer(exc)
        except Exception:
            _logger.exception("handler_failed", method=request.method.decode(), path=request.path.decode())
            response = INTERNAL_ERROR
        if isinstance(response, StreamResponse):  # pragma: no cover - watch streams are refused above
            return _render(error_answer(_NO_STREAMING), v2, head)
        return _render(response, v2, head)


_NO_STREAMING = StreamingUnsupportedError(
    "API Gateway buffers whole responses, so a watch cannot stream here: "
    "long-poll GET /v1/key/{key}?wait_revision=N instead, or watch on a tuco server"
)


def request_of(event: Event) -> Request:
    """The :class:`~tuco.http.messages.Request` of an API Gateway proxy event, payload 1.0 or 2.0."""
    if event.get("version") == "2.0":
        http = (event.get("requestContext") or {}).get("http") or {}
        method = str(http.get("method", "GET")).upper()
        path = _key_path(event) or str(event.get("rawPath") or http.get("path") or "/")
        stage = (event.get("requestContext") or {}).get("stage")
        if stage and stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
        query = str(event.get("rawQueryString") or "").encode()
        headers = [(name.lower().encode(), str(value).encode()) for name, value in (event.get("headers") or {}).items()]
        cookies = event.get("cookies")
        if cookies:
            headers.append((b"cookie", "; ".join(cookies).encode()))
    else:
        method = str(event.get("httpMethod", "GET")).upper()
        path = _key_path(event) or quote(str(event.get("path") or "/"), safe="/")
        query = _query_v1(event)
        multi = event.get("multiValueHeaders")
        if multi:
            headers = [(name.lower().encode(), str(v).encode()) for name, values in multi.items() for v in values or ()]
        else:
            headers = [
                (name.lower().encode(), str(value).encode()) for name, value in (event.get("headers") or {}).items()
            ]
    return Request(method.encode(), path.encode(), query, headers, _body(event))


def _key_path(event: Event) -> str | None:
    """``/v1/key/{key}`` rebuilt from the gateway's (decoded) path parameter, so every key arrives as sent."""
    key = (event.get("pathParameters") or {}).get("key")
    if not isinstance(key, str) or not key:
        return None
    return "/v1/key/" + quote(key, safe="")


def _query_v1(event: Event) -> bytes:
    multi = event.get("multiValueQueryStringParameters")
    pairs: list[tuple[str, str]] = []
    if multi:
        pairs = [(name, value) for name, values in multi.items() for value in values or ()]
    else:
        pairs = list((event.get("queryStringParameters") or {}).items())
    return "&".join(f"{quote(name, safe='')}={quote(str(value), safe='')}" for name, value in pairs).encode()


def _body(event: Event) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidBodyError("the event's body is marked base64 but does not decode") from None
    return str(body).encode()


def _outside(request: Request, allowed: frozenset[bytes]) -> Response | None:
    """A per-method function's 404 for another path, or 405 for another method."""
    if not request.path.startswith(_KEY_PREFIX) or b"/" in request.path[len(_KEY_PREFIX) :]:
        return error_response(404, "not_found", "this function answers /v1/key/{key} only")
    if request.method not in allowed:
        allow = ", ".join(sorted(m.decode() for m in allowed))
        return error_response(405, "method_not_allowed", f"allowed methods: {allow}", ((b"Allow", allow.encode()),))
    return None


def _needs_leases(request: Request) -> bool:
    """Whether the request reads the leases or the expiring keys' state (re-read first: a function follows no feed)."""
    return request.path.startswith(b"/v1/leases") or (
        request.method == b"PUT" and request.path.startswith(_KEY_PREFIX) and request.param(b"lease") is not None
    )


def _render(response: Response, v2: bool, head: bool) -> Answer:
    """The gateway's response dict: text bodies as they are, any other body in base64.

    Payload 2.0 takes ``headers`` (repeated ones joined with commas); 1.0 gets
    ``multiValueHeaders`` only: given both, a gateway merges them, and one
    that does not de-duplicate (serverless-offline) would send every value twice.
    """
    multi: dict[str, list[str]] = {}
    if response.content_type is not None:
        multi["content-type"] = [response.content_type.decode("latin-1")]
    for name, value in response.all_headers():
        multi.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    body = b"" if head else response.body
    textual = (response.content_type or b"").startswith(_TEXT_TYPES)
    answer: Answer = {"statusCode": response.status}
    if v2:
        answer["headers"] = {name: ", ".join(values) for name, values in multi.items()}
    else:
        answer["multiValueHeaders"] = multi
    if textual or not body:
        answer["body"] = body.decode("utf-8", "replace")
        answer["isBase64Encoded"] = False
    else:
        answer["body"] = base64.b64encode(body).decode("ascii")
        answer["isBase64Encoded"] = True
    return answer


_container: Container | None = None


def _get_container() -> Container:
    global _container
    if _container is None:
        _container = Container()
    return _container


def handler(event: Event, context: object = None) -> Answer:
    """Every route of the API, for one function behind an API Gateway proxy integration."""
    return _get_container().invoke(event)


def get_key(event: Event, context: object = None) -> Answer:
    """``GET`` and ``HEAD /v1/key/{key}`` (the book's get function)."""
    return _get_container().invoke(event, _GET)


def put_key(event: Event, context: object = None) -> Answer:
    """``PUT /v1/key/{key}``, with the query parameters and conditions of the server (the book's put function)."""
    return _get_container().invoke(event, frozenset((b"PUT",)))


def delete_key(event: Event, context: object = None) -> Answer:
    """``DELETE /v1/key/{key}`` (the book's delete function)."""
    return _get_container().invoke(event, frozenset((b"DELETE",)))
