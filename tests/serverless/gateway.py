"""API Gateway proxy events for tests, made from the recorded samples in ``events/`` (1.0 and 2.0)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

_EVENTS = Path(__file__).parent / "events"
SAMPLES = {
    "1.0": json.loads((_EVENTS / "rest-v1.json").read_text()),
    "2.0": json.loads((_EVENTS / "http-v2.json").read_text()),
}


def make_event(
    fmt: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    query: str = "",
    binary: bool = False,
) -> dict[str, Any]:
    """The sample event of format ``fmt`` turned into ``method path?query`` with ``body`` (base64 if ``binary``)."""
    event: dict[str, Any] = copy.deepcopy(SAMPLES[fmt])
    text = base64.b64encode(body).decode() if binary else body.decode()
    sent = dict(headers or {})
    key = unquote(path[len("/v1/key/") :]) if path.startswith("/v1/key/") else None  # the greedy {key+}
    if fmt == "2.0":
        event["rawPath"] = path
        event["rawQueryString"] = query
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = unquote(path)
        event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {'/v1/key/{key+}' if key else path}"
        event["headers"] = {**event["headers"], **{name.lower(): value for name, value in sent.items()}}
        event["headers"]["content-length"] = str(len(body))
    else:
        event["httpMethod"] = event["requestContext"]["httpMethod"] = method
        event["path"] = unquote(path)
        event["requestContext"]["path"] = "/prod" + unquote(path)
        event["resource"] = event["requestContext"]["resourcePath"] = "/v1/key/{key+}" if key else path
        pairs = parse_qsl(query, keep_blank_values=True)
        event["queryStringParameters"] = dict(pairs) or None
        multi: dict[str, list[str]] = {}
        for name, value in pairs:
            multi.setdefault(name, []).append(value)
        event["multiValueQueryStringParameters"] = multi or None
        event["headers"] = {**event["headers"], **sent}
        event["multiValueHeaders"] = {**event["multiValueHeaders"], **{n: [v] for n, v in sent.items()}}
    event["pathParameters"] = {"key": key} if key else None
    event["body"] = text if body or binary else None
    event["isBase64Encoded"] = binary
    return event


def body_of(answer: dict[str, Any]) -> bytes:
    """The response body as bytes, decoding base64 where the answer says so."""
    if answer["isBase64Encoded"]:
        return base64.b64decode(answer["body"])
    return str(answer["body"]).encode()


def header(answer: dict[str, Any], name: str) -> str | None:
    """A response header: from ``headers`` (payload 2.0) or ``multiValueHeaders`` (1.0, which must have one value)."""
    if "multiValueHeaders" in answer:
        assert "headers" not in answer, "a 1.0 answer with both is merged by the gateway (values twice)"
        values = answer["multiValueHeaders"].get(name.lower())
        if values is None:
            return None
        assert len(values) == 1, values
        return str(values[0])
    found = answer["headers"].get(name.lower())
    return None if found is None else str(found)
