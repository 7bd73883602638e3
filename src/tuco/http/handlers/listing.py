"""``GET /v1/keys``: a listing page rendered as JSON: items (values in base64 unless keys only), the revision,
the next page's token."""

from __future__ import annotations

import base64
import json

from tuco.core.store import Page
from tuco.errors import HistoryCompactedError, InvalidPageTokenError, InvalidRequestError, LogError
from tuco.http.answers import JSON, error_answer, json_response, refusal
from tuco.http.handlers._base import Context, settled
from tuco.http.handlers.watch import compacted
from tuco.http.messages import Answer, Request, Response
from tuco.http.params import decode_page_token, encode_page_token, flag, page_limit, revision_param, text_param
from tuco.service import Service

__all__ = ["list_keys", "list_page_now", "list_page_through", "render_page"]


_AHEAD = (
    "the page token is for a revision this server has not reached (another server's, or one restored from an "
    "older backup): start the listing again without page_token"
)


def render_page(page: Page, prefix: str, limit: int, keys_only: bool) -> Response:
    """The JSON of one page; ``page`` holds one item more than ``limit`` when more follow."""
    items = page.items
    next_token: str | None = None
    if len(items) > limit:
        items = items[:limit]
        next_token = encode_page_token(page.revision, items[-1].key, prefix)
    b64 = base64.b64encode
    rendered: list[dict[str, object]]
    if keys_only:
        rendered = [
            {"key": key, "create_revision": created, "mod_revision": modified, "version": version}
            for key, _, created, modified, version, _ in items
        ]
    else:
        rendered = [
            {
                "key": key,
                "value": b64(value).decode("ascii"),
                "create_revision": created,
                "mod_revision": modified,
                "version": version,
            }
            for key, value, created, modified, version, _ in items
        ]
    for item, shown in zip(items, rendered, strict=True):
        if item.expires_at:  # only keys with a deadline carry it
            shown["expires_at"] = item.expires_at
    payload = {"revision": page.revision, "items": rendered, "next_page_token": next_token}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(200, body, JSON, (), None, page.revision)


def list_keys(ctx: Context, request: Request, segment: bytes) -> Answer:
    try:
        prefix = text_param(request, b"prefix")
        limit = page_limit(request)
        keys_only = flag(request, b"keys_only")
        token = request.param(b"page_token")
        revision: int | None
        after: str | None
        if token:
            revision, after, token_prefix = decode_page_token(token)
            if token_prefix != prefix:
                raise InvalidPageTokenError(
                    "the page token belongs to a listing of another prefix: send the prefix it was issued for, or "
                    "start the listing again without page_token"
                )
        else:
            after = None
            revision = revision_param(request, b"revision") if request.param(b"revision") is not None else None
    except InvalidRequestError as exc:
        return error_answer(exc)
    if revision is not None and revision > ctx.service.revision:
        # Another replica served the earlier page: catch up to its revision first.
        return _list_after_catch_up(ctx, prefix, after, limit, revision, keys_only)
    return ctx.list_page(prefix, after, limit, revision, keys_only)


async def _list_after_catch_up(
    ctx: Context, prefix: str, after: str | None, limit: int, revision: int, keys_only: bool
) -> Response:
    try:
        await ctx.service.catch_up()
    except LogError as exc:
        return refusal(exc, "no listing", "cannot reach the log to serve that revision; see the server's log")
    return await settled(ctx.list_page(prefix, after, limit, revision, keys_only))


def list_page_now(
    service: Service, prefix: str, after: str | None, limit: int, revision: int | None, keys_only: bool
) -> Response:
    """One page from the keys in memory."""
    if revision is not None and revision > service.revision:
        # Still ahead after catching up: another server's token (or another store's) cannot be served here.
        return error_answer(InvalidPageTokenError(_AHEAD))
    try:
        page = service.page(prefix, after=after, limit=limit + 1, revision=revision)
    except HistoryCompactedError as exc:
        body = {"error": exc.code, "message": str(exc), "oldest_revision": exc.oldest}
        return json_response(exc.status, body)
    return render_page(page, prefix, limit, keys_only)


async def list_page_through(
    service: Service, prefix: str, after: str | None, limit: int, revision: int | None, keys_only: bool
) -> Response:
    """:func:`list_page_now` for a read-through service: the page is read from the database."""
    if revision is not None and revision > service.revision:
        return error_answer(InvalidPageTokenError(_AHEAD))
    try:
        page = await service.page_through(prefix, after=after, limit=limit + 1, revision=revision)
    except HistoryCompactedError as exc:
        return compacted(exc)
    except LogError as exc:
        return refusal(exc, "no listing", "cannot reach the log to list keys; see the server's log")
    return render_page(page, prefix, limit, keys_only)
