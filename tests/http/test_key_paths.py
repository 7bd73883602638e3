"""Keys that look like paths: ``/v1/key/app/config`` is the key ``app/config``, as ``%2F`` is; the alias takes one
segment; the segments proxies rewrite (empty, ``.``, ``..``) are refused with a 400 that says how to send them."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.http.test_api import run_against
from tuco.http.api import KeyValueAPI
from tuco.http.messages import Request, Response
from tuco.http.routes import ALIAS, KEY, ROUTES, match
from tuco.service import Limits, Service

_EMPTY = (
    "the key path has an empty segment (a leading, doubled or trailing /), which proxies merge or drop; "
    "send each / of such a key as %2F, e.g. /v1/key/a%2F%2Fb"
)
_NOT_FOUND = (
    "no such resource: a key is /v1/key/{key}, where the rest of the path is the key (/v1/key/app/config "
    "is the key app/config, as /v1/key/app%2Fconfig is); the book's /v1/{key} takes one segment only; "
    "every route is in /v1/openapi.json"
)


def _dot(segment: str) -> str:
    return (
        f"the key path has a {segment!r} segment, which proxies and clients resolve away; "
        "send its dots as %2E, e.g. /v1/key/a/%2E%2E/b"
    )


def test_a_key_route_takes_the_rest_of_the_path_and_the_alias_one_segment() -> None:
    """match() gives /v1/key/ everything after it, /v1/keys/{key}/ttl every segment between, the alias one only."""
    ttl = next(route for route in ROUTES if route.pattern == "/v1/keys/{key}/ttl")
    assert match(b"/v1/key/a/b/c") == (KEY, b"a/b/c")
    assert match(b"/v1/key/a%2Fb") == (KEY, b"a%2Fb")
    assert match(b"/v1/keys/a/b/ttl") == (ttl, b"a/b")
    assert match(b"/v1/app") == (ALIAS, b"app")
    assert match(b"/v1/app/config") == (None, b"")
    assert match(b"/v1/leases/12/x") == (None, b"")


async def _raw(service: Service, method: bytes, path: bytes, body: bytes = b"") -> Response:
    """One request through the dispatch every front end calls, its raw path as sent (no client normalizes it)."""
    answer = KeyValueAPI(service).handle(Request(method, path, b"", [], body))
    return answer if isinstance(answer, Response) else await answer  # type: ignore[misc]


def test_slashes_and_percent_2f_name_the_same_key_through_every_method() -> None:
    """PUT by /a/b/c, GET by %2F, overwrite by %2F, GET by slashes, list, DELETE by slashes: one key throughout."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        put = await client.put("/v1/key/a/b/c", content=b"one")
        assert (put.status_code, service.store.get("a/b/c")) == (201, b"one")
        got = await client.get("/v1/key/a%2Fb%2Fc")
        assert (got.status_code, got.content) == (200, b"one")
        assert (await client.put("/v1/key/a%2Fb/c", content=b"two")).status_code == 201
        got = await client.get("/v1/key/a/b/c")
        assert (got.status_code, got.content) == (200, b"two")
        assert (await client.head("/v1/key/a/b/c")).headers["content-length"] == "3"
        listed = await client.get("/v1/keys", params={"prefix": "a/", "keys_only": "true"})
        assert [item["key"] for item in listed.json()["items"]] == ["a/b/c"]
        assert (await client.delete("/v1/key/a/b/c")).status_code == 200
        assert "a/b/c" not in service.store
        gone = await client.get("/v1/key/a%2Fb%2Fc")
        assert (gone.status_code, gone.json()["error"]) == (404, "no_such_key")

    run_against(check)


def test_the_ttl_route_takes_a_key_with_slashes() -> None:
    """POST /v1/keys/app/config/ttl touches the key app/config; DELETE makes it persist again."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/app/config", content=b"v")).status_code == 201
        touched = await client.post("/v1/keys/app/config/ttl", params={"ttl": "1h"})
        assert touched.status_code == 200
        assert int(touched.headers["x-tuco-expires-at"]) > 0
        persisted = await client.delete("/v1/keys/app/config/ttl")
        assert (persisted.status_code, persisted.headers["x-tuco-expires-at"]) == (200, "0")

    run_against(check)


def test_percent_decoding_is_done_once() -> None:
    """%252F is the three characters %2F in the key, not a slash; %2E%2E is the key's own dots, not a segment."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/a%252Fb", content=b"x")).status_code == 201
        assert service.store.get("a%2Fb") == b"x" and "a/b" not in service.store
        assert (await client.put("/v1/key/a/%2E%2E/b", content=b"dots")).status_code == 201
        assert service.store.get("a/../b") == b"dots"

    run_against(check)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (b"/v1/key/a//b", _EMPTY),
        (b"/v1/key/a/b/", _EMPTY),
        (b"/v1/key//a", _EMPTY),
        (b"/v1/key/a/../b", _dot("..")),
        (b"/v1/key/a/./b", _dot(".")),
        (b"/v1/key/..", _dot("..")),
        (b"/v1/key/.", _dot(".")),
        (b"/v1/key/", "the key is empty: put it after /v1/key/, e.g. /v1/key/app/config"),
        (
            b"/v1/key/a/%FF",
            "the key is not valid UTF-8 after percent-decoding: percent-encode the key's UTF-8 bytes (%C3%A9 for é)",
        ),
        (
            b"/v1/key/%FF",
            "the key is not valid UTF-8 after percent-decoding: percent-encode the key's UTF-8 bytes (%C3%A9 for é)",
        ),
    ],
)
def test_segments_that_proxies_rewrite_are_refused_with_a_400_that_says_how_to_send_them(
    path: bytes, message: str
) -> None:
    """An empty, . or .. segment as sent is 400 invalid_key naming the escape to use; nothing is written."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for method in (b"GET", b"PUT", b"DELETE"):
            answer = await _raw(service, method, path, b"v")
            assert (answer.status, json.loads(answer.body)) == (400, {"error": "invalid_key", "message": message})
        assert len(service.store) == 0

    run_against(check)


def test_an_escaped_key_with_such_segments_is_written_as_sent() -> None:
    """a%2F%2Fb and a/%2E%2E/b are the keys a//b and a/../b: what the 400 says to send works."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await _raw(service, b"PUT", b"/v1/key/a%2F%2Fb", b"1")).status == 201
        assert (await _raw(service, b"PUT", b"/v1/key/a/%2E%2E/b", b"2")).status == 201
        assert (service.store.get("a//b"), service.store.get("a/../b")) == (b"1", b"2")

    run_against(check)


def test_the_key_length_limit_counts_the_decoded_key_with_its_slashes() -> None:
    """With TUCO_MAX_KEY_BYTES=8, a/b/c/d (7 bytes) is stored and a/b/c/d/e (9) is 414 key_too_long, naming it."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/a/b/c/d", content=b"v")).status_code == 201
        long = await client.put("/v1/key/a/b/c/d/e", content=b"v")
        assert (long.status_code, long.json()) == (
            414,
            {
                "error": "key_too_long",
                "message": "the key is 9 bytes; the limit is 8 (TUCO_MAX_KEY_BYTES): use a shorter key",
            },
        )

    run_against(check, limits=Limits(max_key_bytes=8))


def test_an_unknown_path_under_v1_is_a_404_that_says_where_keys_are() -> None:
    """/v1/app/config (two segments, not a key route) and /nope answer 404 not_found with what to do."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for path in ("/v1/app/config", "/nope", "/v1/leases/1/other"):
            answer = await client.put(path, content=b"v")
            assert (answer.status_code, answer.json()) == (404, {"error": "not_found", "message": _NOT_FOUND}), path

    run_against(check)
