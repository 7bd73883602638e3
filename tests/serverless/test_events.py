"""Malformed API Gateway events, the book's /v1/{key} route, and a function's exit.

A handler that raises makes the gateway answer a bare 502 with no body: every
event, however malformed, must get an answer, and a malformed one a 400.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serverless.conftest import MakeContainer
from tests.serverless.gateway import SAMPLES, body_of, make_event
from tuco import serverless
from tuco.serverless import Container
from tuco.service import Service
from tuco.testing import MemoryLog

ROOT = Path(__file__).resolve().parents[2]
Change = Callable[[dict[str, Any]], None]


def _set(*path: str, value: object) -> Change:
    """A change that sets the field at ``path`` (creating objects on the way) to ``value``."""

    def change(event: dict[str, Any]) -> None:
        target = event
        for name in path[:-1]:
            if not isinstance(target.get(name), dict):
                target[name] = {}
            target = target[name]
        target[path[-1]] = value

    return change


# (name, formats, change): each makes the sample PUT (or GET) event malformed in one way.
MALFORMED: list[tuple[str, tuple[str, ...], Change]] = [
    ("number body marked base64", ("1.0", "2.0"), _set("body", value=12)),
    ("number body", ("1.0", "2.0"), _set("body", value=12.5)),
    ("object body", ("1.0", "2.0"), _set("body", value={"a": 1})),
    ("list body", ("1.0", "2.0"), _set("body", value=["a"])),
    ("boolean body", ("1.0", "2.0"), _set("body", value=True)),
    ("body with a lone surrogate", ("1.0", "2.0"), _set("body", value="a\ud800b")),
    ("isBase64Encoded as the string false", ("1.0", "2.0"), _set("isBase64Encoded", value="false")),
    ("isBase64Encoded as a number", ("1.0", "2.0"), _set("isBase64Encoded", value=1)),
    ("headers as a list", ("1.0", "2.0"), _set("headers", value=[["accept", "*/*"]])),
    ("headers as a string", ("1.0", "2.0"), _set("headers", value="accept: */*")),
    ("a header value that is a number", ("1.0", "2.0"), _set("headers", "x-n", value=5)),
    ("a header value that is null", ("1.0", "2.0"), _set("headers", "x-n", value=None)),
    ("a header value that is a list", ("1.0", "2.0"), _set("headers", "x-n", value=["a"])),
    ("a header value with a lone surrogate", ("1.0", "2.0"), _set("headers", "x-n", value="\udc80")),
    ("a header name with a lone surrogate", ("1.0", "2.0"), _set("headers", "x-\ud800", value="v")),
    ("multiValueHeaders as a list", ("1.0",), _set("multiValueHeaders", value=[1])),
    ("multiValueHeaders with a string for a list", ("1.0",), _set("multiValueHeaders", "accept", value="*/*")),
    ("multiValueHeaders with null in a list", ("1.0",), _set("multiValueHeaders", "accept", value=[None])),
    ("multiValueHeaders with a number in a list", ("1.0",), _set("multiValueHeaders", "accept", value=[7])),
    ("cookies: [null]", ("2.0",), _set("cookies", value=[None])),
    ("cookies as a string", ("2.0",), _set("cookies", value="a=b")),
    ("cookies with a number", ("2.0",), _set("cookies", value=[5])),
    ("cookies with a lone surrogate", ("2.0",), _set("cookies", value=["a=\ud800"])),
    ("a lone surrogate in the path", ("1.0",), _set("path", value="/v1/key/a\ud800")),
    ("a lone surrogate in rawPath", ("2.0",), _set("rawPath", value="/v1/key/a\ud800")),
    ("a lone surrogate in the key parameter", ("1.0", "2.0"), _set("pathParameters", "key", value="a\udfff")),
    ("path as a number", ("1.0",), _set("path", value=404)),
    ("rawPath as a list", ("2.0",), _set("rawPath", value=["/v1/key/a"])),
    ("pathParameters as a list", ("1.0", "2.0"), _set("pathParameters", value=["key"])),
    ("pathParameters as a string", ("1.0", "2.0"), _set("pathParameters", value="key")),
    ("the key parameter as a number", ("1.0", "2.0"), _set("pathParameters", "key", value=5)),
    ("requestContext as a string", ("1.0", "2.0"), _set("requestContext", value="ctx")),
    ("requestContext.http as a list", ("2.0",), _set("requestContext", "http", value=["PUT"])),
    ("the method as a number", ("2.0",), _set("requestContext", "http", "method", value=7)),
    ("httpMethod as null", ("1.0",), _set("httpMethod", value=None)),
    ("httpMethod as an object", ("1.0",), _set("httpMethod", value={"m": "PUT"})),
    ("the stage as a number", ("2.0",), _set("requestContext", "stage", value=3)),
    ("rawQueryString as a number", ("2.0",), _set("rawQueryString", value=12)),
    ("rawQueryString with a lone surrogate", ("2.0",), _set("rawQueryString", value="ttl=\ud800")),
    ("queryStringParameters as a list", ("1.0", "2.0"), _set("queryStringParameters", value=[["ttl", "1s"]])),
    ("a query value that is a number", ("1.0",), _set("queryStringParameters", "ttl", value=30)),
    ("a query name with a lone surrogate", ("1.0",), _set("queryStringParameters", "\ud800", value="1")),
    ("multiValueQueryStringParameters as a list", ("1.0",), _set("multiValueQueryStringParameters", value=[])),
    ("a multi-value query with a number", ("1.0",), _set("multiValueQueryStringParameters", "ttl", value=30)),
    ("a multi-value query with null in a list", ("1.0",), _set("multiValueQueryStringParameters", "t", value=[None])),
    ("version as a number", ("2.0",), _set("version", value=2.0)),
]


def _malformed_cases() -> list[Any]:
    return [pytest.param(fmt, change, id=f"{fmt}-{name}") for name, formats, change in MALFORMED for fmt in formats]


def _assert_well_formed(answer: object, v2: bool) -> int:
    """The answer is what a gateway can send on: a status, string headers, a string body; return the status."""
    assert isinstance(answer, dict)
    status = answer["statusCode"]
    assert isinstance(status, int) and 100 <= status <= 599
    assert isinstance(answer["body"], str) and isinstance(answer["isBase64Encoded"], bool)
    if v2:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer["headers"].items())
    else:
        assert all(
            isinstance(k, str) and all(isinstance(v, str) for v in values)
            for k, values in answer["multiValueHeaders"].items()
        )
    json.dumps(answer)  # what the Lambda runtime does with it
    return status


@pytest.mark.postgres
@pytest.mark.parametrize(("fmt", "change"), _malformed_cases())
def test_a_malformed_event_is_a_400_and_never_raises(containers: MakeContainer, fmt: str, change: Change) -> None:
    """Each malformed field of a PUT event gets 400 invalid_event, JSON, from every function; nothing is stored."""
    fn = containers()
    for allowed in (None, frozenset((b"PUT",))):
        event = make_event(fmt, "PUT", "/v1/key/k", b"v", query="ttl=30s")
        change(event)
        answer = fn.invoke(event, allowed)
        assert _assert_well_formed(answer, event.get("version") == "2.0") == 400, answer
        assert json.loads(answer["body"])["error"] == "invalid_event", answer
    got = fn.invoke(make_event(fmt, "GET", "/v1/key/k"))
    assert got["statusCode"] == 404


@pytest.mark.postgres
@pytest.mark.parametrize("event", [None, [], "GET /v1/key/k", 12, {"version": "2.0"}, {}], ids=repr)
def test_an_event_that_is_not_a_proxy_event_is_a_400(containers: MakeContainer, event: Any) -> None:
    """No event object at all, or one without a method: 400 invalid_event, not a raised exception."""
    answer = containers().invoke(event)
    assert _assert_well_formed(answer, isinstance(event, dict) and event.get("version") == "2.0") == 400, answer
    assert json.loads(answer["body"])["error"] == "invalid_event"


@pytest.mark.postgres
def test_is_base64_encoded_false_means_the_body_is_text(containers: MakeContainer, fmt: str) -> None:
    """isBase64Encoded false stores the body as sent (here a valid base64 string, which must not be decoded)."""
    fn = containers()
    event = make_event(fmt, "PUT", "/v1/key/k", b"aGk=")
    assert event["isBase64Encoded"] is False
    assert fn.invoke(event)["statusCode"] == 201
    assert body_of(fn.invoke(make_event(fmt, "GET", "/v1/key/k"))) == b"aGk="


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_FIELDS: dict[str, list[tuple[str, ...]]] = {
    "1.0": [
        ("httpMethod",),
        ("path",),
        ("headers",),
        ("multiValueHeaders",),
        ("queryStringParameters",),
        ("multiValueQueryStringParameters",),
        ("pathParameters",),
        ("body",),
        ("isBase64Encoded",),
        ("requestContext",),
        ("version",),
    ],
    "2.0": [
        ("rawPath",),
        ("rawQueryString",),
        ("cookies",),
        ("headers",),
        ("queryStringParameters",),
        ("pathParameters",),
        ("body",),
        ("isBase64Encoded",),
        ("requestContext",),
        ("requestContext", "http"),
        ("requestContext", "http", "method"),
        ("requestContext", "http", "path"),
        ("requestContext", "stage"),
    ],
}


@st.composite
def _events(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    fmt = draw(st.sampled_from(["1.0", "2.0"]))
    event = copy.deepcopy(SAMPLES[fmt])
    for path in draw(st.lists(st.sampled_from(_FIELDS[fmt]), min_size=1, max_size=4, unique=True)):
        _set(*path, value=draw(_JSON))(event)
    return fmt, event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events())
def test_any_event_shape_gets_an_answer_never_an_exception(case: tuple[str, dict[str, Any]]) -> None:
    """Sample events with fields replaced by arbitrary JSON: every function answers, never with a 5xx."""
    _, event = case
    container = Container(Service(MemoryLog()))
    try:
        for allowed in (None, frozenset((b"GET", b"HEAD")), frozenset((b"PUT",)), frozenset((b"DELETE",))):
            answer = container.invoke(copy.deepcopy(event), allowed)
            status = _assert_well_formed(answer, event.get("version") == "2.0")
            assert status < 500, event
    finally:
        container.close()


def _book_route(fmt: str, method: str, key: str, body: bytes = b"", *, parameters: bool) -> dict[str, Any]:
    """The book's gateway: ``METHOD /v1/{key}`` to getKey / putKey / deleteKey, with or without pathParameters."""
    event = make_event(fmt, method, f"/v1/key/{key}", body)
    if fmt == "2.0":
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/{key}"
        event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} /v1/{{key}}"
    else:
        event["path"] = f"/v1/{unquote(key)}"  # payload 1.0 carries the path decoded
        event["requestContext"]["path"] = f"/prod/v1/{unquote(key)}"
        event["resource"] = event["requestContext"]["resourcePath"] = "/v1/{key}"
    if not parameters:
        event["pathParameters"] = None
    return event


@pytest.mark.postgres
@pytest.mark.parametrize("parameters", [True, False], ids=["with-pathParameters", "path-only"])
def test_the_per_method_functions_answer_the_books_route_and_ours(
    containers: MakeContainer, fmt: str, parameters: bool
) -> None:
    """put_key, get_key and delete_key answer /v1/{key} (the book's gateway) as they answer /v1/key/{key}."""
    serverless._container = containers()
    try:
        put = serverless.put_key(_book_route(fmt, "PUT", "k", b"v", parameters=parameters), None)
        assert (put.get("statusCode"), put) == (201, put)
        assert body_of(serverless.get_key(_book_route(fmt, "GET", "k", parameters=parameters), None)) == b"v"
        assert body_of(serverless.get_key(make_event(fmt, "GET", "/v1/key/k"), None)) == b"v"
        spaced = serverless.put_key(_book_route(fmt, "PUT", "a%20b", b"s", parameters=parameters), None)
        assert spaced["statusCode"] == 201
        assert body_of(serverless.get_key(make_event(fmt, "GET", "/v1/key/a%20b"), None)) == b"s"
        assert serverless.delete_key(_book_route(fmt, "DELETE", "k", parameters=parameters), None)["statusCode"] == 200
        assert serverless.get_key(make_event(fmt, "GET", "/v1/key/k"), None)["statusCode"] == 404
        refused = serverless.get_key(_book_route(fmt, "DELETE", "k", parameters=parameters), None)
        assert refused["statusCode"] == 405
        assert serverless.put_key(make_event(fmt, "PUT", "/v1/a/b", b"x"), None)["statusCode"] == 404
    finally:
        serverless._container = None


@pytest.mark.postgres
def test_a_function_exits_without_a_pending_task_warning(tmp_path: Path, pg_dsn: str) -> None:
    """A process that ran a function and exits (Lambda recycling it) logs no destroyed pending task, no error."""
    events = [make_event("2.0", "PUT", "/v1/key/k", b"v"), make_event("2.0", "GET", "/v1/key/k")]
    script = (
        "import json, sys\n"
        "from tuco import serverless\n"
        "for event in json.load(sys.stdin):\n"
        "    print(serverless.handler(event)['statusCode'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(events),
        env={**os.environ, "TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn, "PYTHONASYNCIODEBUG": ""},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    statuses = [line for line in result.stdout.splitlines() if line.isdigit()]  # the rest is tuco's log
    assert (result.returncode, statuses) == (0, ["201", "200"]), result.stderr
    output = result.stdout + result.stderr  # tuco's log (and asyncio's, through it) goes to stdout
    assert "Task was destroyed but it is pending" not in output, output
    assert "Traceback" not in output, output
    assert '"level": "error"' not in output, output
