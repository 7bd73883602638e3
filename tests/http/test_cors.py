"""CORS on every route for TUCO_CORS_ORIGINS, over real sockets on both front ends (tuco serve's and uvicorn)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.http.secured import FRONT_ENDS, secured_service, served_secured
from tests.http.test_auth import ADMIN
from tuco.config import load_settings
from tuco.errors import ConfigurationError
from tuco.http.api import KeyValueAPI
from tuco.http.cors import Cors
from tuco.observability import Metrics
from tuco.service import Limits, Service
from tuco.testing import MemoryLog
from tuco.watchers import WatchSettings

APP = "http://app.test:3000"
EVIL = "http://evil.test"
EXPOSED = "ETag, X-Tuco-Revision, X-Tuco-Expires-At, X-Tuco-Wait, X-Request-Id, Retry-After"
ALLOWED_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match, Last-Event-ID, X-Request-Id"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
Check = Callable[[httpx.AsyncClient], Awaitable[None]]


def cors_fields(response: httpx.Response) -> dict[str, str]:
    """The CORS fields of an answer, and Vary and Allow: what a browser decides by."""
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-") or name.lower() in ("vary", "allow")
    }


def run(front_end: str, check: Check, origins: frozenset[str], *, auth: bool = False) -> None:
    """Run ``check`` against a service with ``origins`` allowed, served by ``front_end`` on a loopback port."""

    async def main() -> None:
        watching = WatchSettings(allow_origins=origins)
        if auth:
            service = secured_service(watch=watching)
        else:
            service = Service(MemoryLog(), Limits(), Metrics(), watch_settings=watching)
        async with served_secured(front_end, service) as client:
            await check(client)

    asyncio.run(main())


def allowed_answer() -> dict[str, str]:
    return {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": EXPOSED,
        "vary": "Origin",
    }


@FRONT_ENDS
def test_an_allowed_origin_gets_every_cors_field_on_reads_and_writes(front_end: str) -> None:
    """A listed origin is echoed, with credentials, the exposed headers and Vary, on a 201, a 200 and a 404."""

    async def check(client: httpx.AsyncClient) -> None:
        origin = {"Origin": APP}
        written = await client.put("/v1/key/a", content=b"one", headers=origin)
        assert (written.status_code, written.headers["etag"]) == (201, '"1"')
        assert cors_fields(written) == allowed_answer()
        read = await client.get("/v1/key/a", headers=origin)
        assert (read.status_code, read.content) == (200, b"one")
        assert cors_fields(read) == allowed_answer()
        listed = await client.get("/v1/keys", params={"prefix": "a"}, headers=origin)
        assert listed.status_code == 200
        assert cors_fields(listed) == allowed_answer()
        missing = await client.get("/v1/key/nope", headers=origin)
        assert (missing.status_code, missing.json()["error"]) == (404, "no_such_key")
        assert cors_fields(missing) == allowed_answer()
        deleted = await client.delete("/v1/key/a", headers={**origin, "If-Match": '"1"'})
        assert deleted.status_code == 200
        assert cors_fields(deleted) == allowed_answer()

    run(front_end, check, frozenset({APP}))


@FRONT_ENDS
def test_an_answer_that_waits_gets_the_fields_too(front_end: str) -> None:
    """A long poll (an awaited answer) from a listed origin is answered with the CORS fields once the key changes."""

    async def check(client: httpx.AsyncClient) -> None:
        assert (await client.put("/v1/key/a", content=b"one")).status_code == 201
        waiting = asyncio.create_task(
            client.get("/v1/key/a", params={"wait_revision": "2", "timeout": "30s"}, headers={"Origin": APP})
        )
        await asyncio.sleep(0.05)  # lets the poll arrive first; if it does not, it is answered at once, as well
        assert (await client.put("/v1/key/a", content=b"two")).status_code == 201
        answer = await waiting
        assert (answer.status_code, answer.content, answer.headers["etag"]) == (200, b"two", '"2"')
        assert cors_fields(answer) == allowed_answer()

    run(front_end, check, frozenset({APP}))


@FRONT_ENDS
def test_another_origin_or_none_gets_only_vary(front_end: str) -> None:
    """An origin not listed, or no Origin at all, gets no CORS field: only Vary: Origin, for caches."""

    async def check(client: httpx.AsyncClient) -> None:
        assert (await client.put("/v1/key/a", content=b"one")).status_code == 201
        for headers in ({"Origin": EVIL}, {}, {"Origin": "null"}, {"Origin": APP + "/"}):
            answer = await client.get("/v1/key/a", headers=headers)
            assert (answer.status_code, answer.content) == (200, b"one")
            assert cors_fields(answer) == {"vary": "Origin"}, headers

    run(front_end, check, frozenset({APP}))


@FRONT_ENDS
def test_a_preflight_with_credentials_is_answered_with_the_routes_methods(front_end: str) -> None:
    """A preflight for a PUT with Authorization and If-Match: 204, the key route's methods, the allowed headers."""

    async def check(client: httpx.AsyncClient) -> None:
        asked = {
            "Origin": APP,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization,if-match",
        }
        for path in ("/v1/key/a%2Fb", "/v1/a"):
            answer = await client.options(path, headers=asked)
            assert (answer.status_code, answer.content) == (204, b"")
            assert "content-length" not in answer.headers
            assert cors_fields(answer) == {
                "allow": "GET, HEAD, PUT, DELETE, OPTIONS",
                "access-control-allow-origin": APP,
                "access-control-allow-credentials": "true",
                "access-control-allow-methods": "GET, HEAD, PUT, DELETE",
                "access-control-allow-headers": ALLOWED_HEADERS,
                "access-control-max-age": "600",
                "vary": PREFLIGHT_VARY,
            }
        leases = await client.options("/v1/leases", headers={"Origin": APP, "Access-Control-Request-Method": "POST"})
        assert leases.status_code == 204
        assert leases.headers["access-control-allow-methods"] == "GET, HEAD, POST"
        keepalive = await client.options("/v1/leases/7/keepalive", headers={"Origin": APP})
        assert keepalive.headers["access-control-allow-methods"] == "POST"

    run(front_end, check, frozenset({APP}), auth=True)


@FRONT_ENDS
def test_a_preflight_without_credentials_from_any_origin_gets_no_credentials(front_end: str) -> None:
    """With * configured, a preflight and an answer allow any origin as *, never with credentials."""

    async def check(client: httpx.AsyncClient) -> None:
        answer = await client.options("/v1/watch", headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"})
        assert answer.status_code == 204
        assert cors_fields(answer) == {
            "allow": "GET, HEAD, OPTIONS",
            "access-control-allow-origin": "*",
            "access-control-allow-methods": "GET, HEAD",
            "access-control-allow-headers": ALLOWED_HEADERS,
            "access-control-max-age": "600",
        }
        health = await client.get("/healthz", headers={"Origin": EVIL})
        assert health.status_code == 200
        assert cors_fields(health) == {"access-control-allow-origin": "*", "access-control-expose-headers": EXPOSED}
        plain = await client.get("/healthz")
        assert cors_fields(plain) == {}

    run(front_end, check, frozenset({"*"}))


@FRONT_ENDS
def test_a_disallowed_preflight_and_an_unknown_path(front_end: str) -> None:
    """A preflight from an unlisted origin gets Allow alone (the browser refuses); a path with no route is 404."""

    async def check(client: httpx.AsyncClient) -> None:
        refused = await client.options("/v1/key/a", headers={"Origin": EVIL, "Access-Control-Request-Method": "PUT"})
        assert refused.status_code == 204
        assert cors_fields(refused) == {"allow": "GET, HEAD, PUT, DELETE, OPTIONS", "vary": PREFLIGHT_VARY}
        nowhere = await client.options("/nowhere", headers={"Origin": APP, "Access-Control-Request-Method": "GET"})
        assert (nowhere.status_code, nowhere.json()["error"]) == (404, "not_found")

    run(front_end, check, frozenset({APP}))


@FRONT_ENDS
def test_with_authentication_on_preflights_need_no_token_and_refusals_are_readable(front_end: str) -> None:
    """Auth on: the preflight is answered without a token; a 401 and a 403 carry the CORS fields a page needs."""

    async def check(client: httpx.AsyncClient) -> None:
        preflight = await client.options("/v1/keys", headers={"Origin": APP, "Access-Control-Request-Method": "GET"})
        assert preflight.status_code == 204
        anonymous = await client.get("/v1/keys", headers={"Origin": APP})
        assert (anonymous.status_code, anonymous.json()["error"]) == (401, "unauthorized")
        assert cors_fields(anonymous)["access-control-allow-origin"] == APP
        signed = await client.get("/v1/keys", headers={"Origin": APP, **ADMIN})
        assert signed.status_code == 200
        assert cors_fields(signed) == allowed_answer()

    run(front_end, check, frozenset({APP}), auth=True)


@FRONT_ENDS
def test_a_body_refused_before_the_api_is_readable_by_the_page_that_sent_it(front_end: str) -> None:
    """A value over the limit is refused (413) before the request reaches the API, with the same CORS fields.

    Without them a browser hides the answer from the page: its fetch fails as a network error instead of
    telling it that the value is too large and what the limit is.
    """
    too_large = b"v" * ((1 << 20) + 1)

    async def check(client: httpx.AsyncClient) -> None:
        refused = await client.put("/v1/key/a", content=too_large, headers={"Origin": APP})
        assert (refused.status_code, refused.json()["error"]) == (413, "value_too_large")
        assert cors_fields(refused) == allowed_answer()
        other = await client.put("/v1/key/a", content=too_large, headers={"Origin": EVIL})
        assert (other.status_code, cors_fields(other)) == (413, {"vary": "Origin"})
        assert (await client.get("/v1/key/a")).status_code == 404

    run(front_end, check, frozenset({APP}))


@FRONT_ENDS
def test_a_watch_is_a_fetch_stream_with_an_authorization_header(front_end: str) -> None:
    """A page's fetch of /v1/watch with a bearer token gets the stream, its CORS fields once each, and events."""

    async def check(client: httpx.AsyncClient) -> None:
        headers = {"Origin": APP, **ADMIN}
        async with client.stream("GET", "/v1/watch", params={"prefix": "w/"}, headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"] == "text/event-stream"
            assert cors_fields(stream) == allowed_answer()
            assert stream.headers.get_list("access-control-allow-origin") == [APP]
            written = await client.put("/v1/key/w%2Fx", content=b"v", headers=ADMIN)
            assert written.status_code == 201
            received = b""
            async for chunk in stream.aiter_bytes():
                received += chunk
                if b"event: put" in received:
                    break
        assert b'"key":"w/x"' in received

    run(front_end, check, frozenset({APP}), auth=True)


@FRONT_ENDS
def test_with_no_origin_configured_options_is_405_and_nothing_is_added(front_end: str) -> None:
    """TUCO_CORS_ORIGINS empty (the default): OPTIONS is 405 as before, and no answer carries a CORS field."""

    async def check(client: httpx.AsyncClient) -> None:
        refused = await client.options("/v1/key/a", headers={"Origin": APP, "Access-Control-Request-Method": "PUT"})
        assert (refused.status_code, refused.json()["error"]) == (405, "method_not_allowed")
        assert cors_fields(refused) == {"allow": "GET, HEAD, PUT, DELETE"}
        read = await client.get("/healthz", headers={"Origin": APP})
        assert cors_fields(read) == {}

    run(front_end, check, frozenset())


def test_cors_is_chosen_once_when_the_api_is_built() -> None:
    """No origin: handle is the API's own method (the request path pays nothing); with one, the CORS layer's."""
    bare = KeyValueAPI(Service(MemoryLog(), Limits(), Metrics()))
    assert bare.handle == bare.answer_open
    wrapped = KeyValueAPI(
        Service(MemoryLog(), Limits(), Metrics(), watch_settings=WatchSettings(allow_origins=frozenset({APP})))
    )
    layer = wrapped.handle.__self__  # type: ignore[attr-defined]
    assert type(layer) is Cors
    assert wrapped.handle == layer.handle


def test_tuco_cors_origins_and_its_former_name_are_both_read() -> None:
    """TUCO_CORS_ORIGINS and TUCO_CORS_ALLOW_ORIGINS together are the allowed set; a non-origin is refused."""
    settings = load_settings(cors_origins=" http://a.test ,https://b.test:8443", cors_allow_origins="http://c.test")
    assert settings.allowed_origins == frozenset({"http://a.test", "https://b.test:8443", "http://c.test"})
    assert load_settings().allowed_origins == frozenset()
    with pytest.raises(ConfigurationError) as refused:
        load_settings(cors_origins="app.test")
    assert "TUCO_CORS_ORIGINS: 'app.test' is not an origin such as https://app.example" in str(refused.value)
