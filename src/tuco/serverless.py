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

The service reads through (:class:`~tuco.cache.ReadThrough`) and follows no
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
import atexit
import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog

from tuco.assembly import build_service
from tuco.config import load_settings
from tuco.errors import (
    InvalidBodyError,
    InvalidEventError,
    MethodNotAllowedError,
    NotFoundError,
    StreamingUnsupportedError,
    TucoError,
)
from tuco.http.answers import INTERNAL_ERROR, error_answer, value_too_large
from tuco.http.api import KeyValueAPI
from tuco.http.messages import Request, Response, StreamResponse
from tuco.http.routes import KEY, Route, Target, match
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
        """Close the service, end what still runs on the loop, close the loop (at exit, and in tests).

        A loop discarded with tasks pending (the group commit waits for writes forever) makes
        asyncio log "Task was destroyed but it is pending" as the process exits.
        """
        if self.loop.is_closed():
            return
        try:
            if self.api is not None:
                self.loop.run_until_complete(self.api.service.aclose())
                self.api = None
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
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
        v2 = isinstance(event, Mapping) and event.get("version") == "2.0"
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
            request.path = _book_route(request.path)
        route, _ = match(request.path)
        if allowed is not None:
            refused = _outside(request, route, allowed)
            if refused is not None:
                return _render(refused, v2, head)
        if len(request.body) > api.limits.max_value_bytes:
            return _render(value_too_large(api.limits.max_value_bytes), v2, head)
        if route is not None and request.method == b"GET" and route.first.streams:
            return _render(error_answer(_NO_STREAMING), v2, head)
        try:
            service = api.service
            if service.access.enabled or _needs_leases(request, route):  # a full copy's refresh does nothing
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


def request_of(event: object) -> Request:
    """The :class:`~tuco.http.messages.Request` of an API Gateway proxy event, payload 1.0 or 2.0.

    Every field is checked against the shape the gateway sends (strings, objects of strings,
    lists of strings, a boolean ``isBase64Encoded``): anything else raises
    :class:`~tuco.errors.InvalidEventError`, never a TypeError the gateway would turn into a 502.
    """
    if not isinstance(event, Mapping):
        raise InvalidEventError("the event is not an API Gateway proxy event (a JSON object)")
    headers: list[tuple[bytes, bytes]] = []
    if event.get("version") == "2.0":
        context = _object(event, "requestContext")
        http = _object(context, "requestContext.http")
        method = _text(http.get("method"), "requestContext.http.method")
        raw_path = _text(event.get("rawPath") if event.get("rawPath") is not None else http.get("path"), "rawPath")
        _utf8(raw_path, "rawPath")
        _object(event, "queryStringParameters")  # rawQueryString is what is read; a malformed object is still one
        path = _key_path(event) or raw_path
        stage = _optional_text(context.get("stage"), "requestContext.stage")
        if stage and stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
        query = _utf8(_optional_text(event.get("rawQueryString"), "rawQueryString"), "rawQueryString")
        _add_headers(headers, event, "headers")
        cookies = _texts(event.get("cookies"), "cookies")
        if cookies:
            headers.append((b"cookie", _utf8("; ".join(cookies), "cookies")))
    else:
        method = _text(event.get("httpMethod"), "httpMethod")
        sent_path = quote(_utf8(_text(event.get("path"), "path"), "path"), safe="/")
        path = _key_path(event) or sent_path
        query = _query_v1(event)
        _object(event, "requestContext")
        _add_headers(headers, event, "headers")
        multi = _object(event, "multiValueHeaders")
        if multi:  # the gateway sends both; the multi-valued form keeps repeated headers
            headers.clear()
            for name, values in multi.items():
                for value in _texts(values, f"multiValueHeaders[{name!r}]"):
                    headers.append(_header(name, value))
    return Request(_utf8(method.upper(), "the method"), _utf8(path, "the path"), query, headers, _body(event))


def _object(event: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The event's field ``name`` (its last dotted part) as an object; absent or null is an empty one."""
    value = event.get(name.rpartition(".")[2])
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEventError(f"the event's {name} must be an object")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEventError(f"the event's {name} must be a non-empty string")
    return value


def _optional_text(value: object, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEventError(f"the event's {name} must be a string")
    return value


def _texts(value: object, name: str) -> list[str]:
    """A list of strings (absent or null: none)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidEventError(f"the event's {name} must be a list of strings")
    return value


def _utf8(text: str, name: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: JSON can carry one, UTF-8 cannot
        raise InvalidEventError(f"the event's {name} is not valid Unicode (a lone surrogate)") from None


def _header(name: object, value: object) -> tuple[bytes, bytes]:
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidEventError("the event's headers must map names to strings")
    return _utf8(name.lower(), "header names"), _utf8(value, f"header {name!r}")


def _add_headers(headers: list[tuple[bytes, bytes]], event: Mapping[str, Any], field: str) -> None:
    for name, value in _object(event, field).items():
        headers.append(_header(name, value))


def _key_path(event: Mapping[str, Any]) -> str | None:
    """``/v1/key/{key}`` rebuilt from the gateway's (decoded) path parameter, so every key arrives as sent."""
    key = _object(event, "pathParameters").get("key")
    if key is None:
        return None
    if not isinstance(key, str):
        raise InvalidEventError("the event's pathParameters must map names to strings")
    if not key:
        return None
    # The gateway decoded it (a greedy {key+} spans slashes): every byte escaped, dots too, so no segment
    # rule of the path refuses what the caller had escaped.
    return "/v1/key/" + quote(_utf8(key, "key path parameter"), safe="").replace(".", "%2E")


def _query_v1(event: Mapping[str, Any]) -> bytes:
    """The query string from the parameter objects (the gateway sends both; the multi-valued one keeps repeats)."""
    single = []
    for name, value in _object(event, "queryStringParameters").items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidEventError("the event's queryStringParameters must map names to strings")
        single.append((_utf8(name, "query names"), _utf8(value, f"query {name!r}")))
    multi = [
        (_utf8(str(name), "query names"), _utf8(value, f"query {name!r}"))
        for name, values in _object(event, "multiValueQueryStringParameters").items()
        for value in _texts(values, f"query {name!r}")
    ]
    return b"&".join(
        quote(name, safe="").encode() + b"=" + quote(value, safe="").encode() for name, value in multi or single
    )


def _body(event: Mapping[str, Any]) -> bytes:
    body = event.get("body")
    encoded = event.get("isBase64Encoded")
    if encoded is not None and not isinstance(encoded, bool):
        raise InvalidEventError("the event's isBase64Encoded must be true or false")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise InvalidEventError("the event's body must be a string (base64 when isBase64Encoded)")
    if encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidBodyError("the event's body is marked base64 but does not decode") from None
    return _utf8(body, "body")


def _book_route(path: bytes) -> bytes:
    """The book's ``/v1/{key}`` as ``/v1/key/{key}``, for the per-method functions (whose routes are keys only)."""
    if path.startswith(b"/v1/") and not path.startswith(_KEY_PREFIX):
        segment = path[4:]
        if segment and b"/" not in segment:
            return _KEY_PREFIX + segment
    return path


def _outside(request: Request, route: Route | None, allowed: frozenset[bytes]) -> Response | None:
    """A per-method function's 404 for another path, or 405 for another method."""
    if route is not KEY:
        return error_answer(NotFoundError("this function answers /v1/key/{key} only"))
    if request.method not in allowed:
        allow = ", ".join(sorted(m.decode() for m in allowed))
        return error_answer(MethodNotAllowedError(allow))
    return None


def _needs_leases(request: Request, route: Route | None) -> bool:
    """Whether the request reads the leases or the expiring keys' state (re-read first: a function follows no feed)."""
    if route is None:
        return request.path.startswith(b"/v1/leases/")  # a path beneath a lease: its 404 as a lease route gives it
    if route.target is Target.LEASE or route.target is Target.SOME:
        return True
    return request.method == b"PUT" and route.target is Target.KEY and request.param(b"lease") is not None


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
        atexit.register(_close_at_exit, _container)
    return _container


def _close_at_exit(container: Container) -> None:
    """Commit what is queued and close the pool when the process ends (Lambda recycling the container)."""
    try:
        container.close()
    except Exception:  # the process is ending either way: say why, never raise from an exit hook
        _logger.exception("close_failed")


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
