"""``GET /v1/history/{key}``: who changed a key, when and how, from the retained history, newest first."""

from __future__ import annotations

import base64

from tuco.core.history import Change
from tuco.core.origin import origin_fields
from tuco.errors import InvalidParameterError, TucoError
from tuco.http.answers import error_answer, json_response
from tuco.http.handlers._base import Context
from tuco.http.messages import Answer, Request
from tuco.http.params import decode_key, page_limit, revision_param, text_param

__all__ = ["history"]


def history(ctx: Context, request: Request, segment: bytes) -> Answer:
    """A page of the key's changes below ``before`` (default: all retained), ``limit`` at most; 410 past the history."""
    service = ctx.service
    try:
        key = decode_key(segment) if segment else text_param(request, b"key")
        if not key:
            raise InvalidParameterError("name the key: /v1/history/{key} or /v1/history?key=")
        limit = page_limit(request)
        before = revision_param(request, b"before") if request.param(b"before") is not None else service.revision + 1
        if service.reads_through:
            raise InvalidParameterError("the history needs the whole state in memory (not TUCO_STATE=cache)")
        changes = service.key_history(key, before, limit + 1)
    except TucoError as exc:
        return error_answer(exc)
    page = changes[:limit]
    more = len(changes) > limit
    return json_response(
        200,
        {
            "key": key,
            "changes": [_change(change) for change in page],
            "oldest_revision": service.oldest_revision,
            "next_before": page[-1][0] if more else None,
        },
        service.revision,
    )


def _change(change: Change) -> dict[str, object]:
    """One change as JSON: its revision, put or delete, a put's value (base64) and its origin where recorded."""
    revision, code, _, value, _, origin = change
    shown: dict[str, object] = {"revision": revision, "type": "put" if code == 1 else "delete"}
    if code == 1:
        shown["value"] = base64.b64encode(value).decode("ascii")
    shown.update(origin_fields(origin, code == 2))
    return shown
