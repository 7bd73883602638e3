"""``GET /v1/history/{key}`` as a call: who changed a key, when and how (no I/O, as :mod:`tuco.client._calls`)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, NamedTuple

from tuco.client._calls import Answer, Call, _body, _expect, key_path

__all__ = ["Change", "HistoryPage", "history"]


class Change(NamedTuple):
    """One retained change of a key: ``type`` put or delete, a put's value, and who made it where recorded."""

    revision: int
    type: str
    value: bytes | None
    by: str | None
    at: int | None
    reason: str | None


class HistoryPage(NamedTuple):
    """Changes newest first; ``next_before`` asks for the page after (None: no more retained)."""

    changes: list[Change]
    next_before: int | None
    oldest_revision: int


def _change(raw: Mapping[str, Any]) -> Change:
    value = raw.get("value")
    return Change(
        int(raw["revision"]),
        str(raw["type"]),
        base64.b64decode(value) if isinstance(value, str) else None,
        raw.get("by"),
        raw.get("at"),
        raw.get("reason"),
    )


def history(key: str, *, limit: int | None = None, before: int | None = None) -> Call[HistoryPage]:
    """``GET /v1/history/{key}``: a page of the key's retained changes below ``before``, newest first."""
    params: list[tuple[str, str]] = []
    if limit is not None:
        params.append(("limit", str(limit)))
    if before is not None:
        params.append(("before", str(before)))

    def parse(answer: Answer) -> HistoryPage:
        _expect(answer, (200,), key=key)
        body = _body(answer)
        return HistoryPage([_change(c) for c in body["changes"]], body["next_before"], int(body["oldest_revision"]))

    return Call("GET", "/v1/history/" + key_path(key).removeprefix("/v1/key/"), parse, tuple(params))
