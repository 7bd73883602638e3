"""The OpenAPI 3.1 description of the HTTP API, rendered from the route table and the error classes.

Every path and method comes from :data:`tuco.http.routes.ROUTES`: each operation's
summary, parameters, body and answers as declared on it, and its error statuses from
the error classes it declares (status and code are the class's), besides those any
request can get from the HTTP layer (framing, limits, credentials, start-up and
shutdown: :data:`tuco.http._schema.COMMON`). HEAD answers GET's statuses and headers
without bodies. No status is typed here. The document is served at
``/v1/openapi.json`` and kept in the repository as ``openapi.json``
(``python -m tuco.http.openapi > openapi.json``; a test compares).
"""

from __future__ import annotations

import json
import sys

import tuco
from tuco.errors import ForbiddenError, TucoError, UnauthorizedError
from tuco.http._route import Operation, Target
from tuco.http._schema import COMMON, Schema, components, error
from tuco.http.routes import ROUTES

__all__ = ["document", "document_bytes"]

_SHARED: dict[str, Schema] = {
    common.name: error(common.description.format(code=common.error.code), common.headers) for common in COMMON
}
"""The answers any request may get, as the document's shared responses."""
_GUARD = (UnauthorizedError, ForbiddenError)
_REFUSES: dict[Target, tuple[type[TucoError], ...]] = {Target.PUBLIC: (), Target.AUTHENTICATED: (UnauthorizedError,)}
"""What the guard may answer by the operation's target (401 and 403 by default; public: nothing to check)."""


def _without_body(response: Schema) -> Schema:
    return {key: value for key, value in response.items() if key != "content"}


def _any(operation: Operation, head: bool) -> dict[str, Schema]:
    """The shared answers any request to the operation may get: the guard's only as its target allows."""
    refuses = _REFUSES.get(operation.target, _GUARD)
    return {
        str(common.error.status): _without_body(_SHARED[common.name])
        if head
        else {"$ref": f"#/components/responses/{common.name}"}
        for common in COMMON
        if common.error not in _GUARD or common.error in refuses
    }


def _errors(operation: Operation) -> dict[str, Schema]:
    """The operation's own error answers by status: each class's code in its words, its header fields merged."""
    words: dict[str, list[str]] = {}
    headers: dict[str, Schema] = {}
    for fails in operation.errors:
        status = str(fails.error.status)
        words.setdefault(status, []).append(fails.words.format(code=fails.error.code))
        headers.setdefault(status, {}).update(fails.headers)
    return {status: error(", ".join(parts), headers[status]) for status, parts in words.items()}


def _operation(operation: Operation, head: bool) -> Schema:
    own = {**operation.answers, **_errors(operation)}
    if head:
        own = {status: _without_body(answer) for status, answer in own.items()}
    rendered: Schema = {"summary": operation.summary, "operationId": operation.operation_id}
    if operation.target is Target.PUBLIC and operation.permission is None:
        rendered["security"] = [{}]  # no credential is even looked at
    if operation.parameters:
        rendered["parameters"] = list(operation.parameters)
    if operation.body is not None:
        rendered["requestBody"] = operation.body
    rendered["responses"] = {**_any(operation, head), **own}
    return rendered


def _paths() -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for route in ROUTES:
        item: Schema = {"parameters": list(route.parameters)} if route.parameters else {}
        for method, operation in route.operations.items():
            item[method.decode().lower()] = _operation(operation, method == b"HEAD")
        paths[route.pattern] = item
    return paths


def document() -> Schema:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tuco",
            "version": tuco.__version__,
            "description": "A dependable key-value store service. Errors are JSON {error, message} (docs/concepts.md). "
            "Any request may carry an X-Request-Id (1 to 128 visible ASCII characters): its answer echoes it, and the "
            "access log (TUCO_ACCESS_LOG) records it; with the access log on, an answer without one gets a new one.",
        },
        "security": [{}, {"bearer": []}],
        "paths": _paths(),
        "components": {**components(), "responses": _SHARED},
    }


def document_bytes() -> bytes:
    """The document as served and as kept in the repository (sorted keys, two-space indent, final newline)."""
    return (json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


if __name__ == "__main__":
    sys.stdout.buffer.write(document_bytes())
