"""A listing page rendered as JSON: items (values in base64 unless keys only), the revision, the next page's token."""

from __future__ import annotations

import base64
import json

from tuco.core.store import Page
from tuco.http.answers import JSON
from tuco.http.messages import Response
from tuco.http.params import encode_page_token

__all__ = ["render_page"]


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
    return Response(200, body, JSON, (), b"X-Tuco-Revision: %d\r\n" % page.revision)
