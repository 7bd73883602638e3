"""GET /v1/keys: prefix listing with pinned revisions and opaque page tokens, in process over the memory log."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.http.test_api import run_against
from tuco.http.api import encode_page_token
from tuco.http.asgi import ASGIApp
from tuco.service import Service
from tuco.testing import MemoryLog


def path(key: str) -> str:
    return "/v1/key/" + quote(key, safe="")


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def list_all(client: httpx.AsyncClient, **params: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """Every item of one listing, following next_page_token, and the revision of each page."""
    items: list[dict[str, Any]] = []
    revisions: list[int] = []
    token = None
    while True:
        query = dict(params, **({"page_token": token} if token else {}))
        response = await client.get("/v1/keys", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert response.headers["x-tuco-revision"] == str(page["revision"])
        items += page["items"]
        revisions.append(page["revision"])
        token = page["next_page_token"]
        if token is None:
            return items, revisions


def test_listing_returns_items_under_the_prefix_in_utf8_byte_order() -> None:
    """Keys under the prefix come in UTF-8 byte order with base64 values and revisions; others are left out."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for key in ["app/b", "app/a", "app/é", "app/z", "apq", "ap", "other"]:
            assert (await client.put(path(key), content=key.encode())).status_code == 201
        await client.put(path("app/a"), content=b"again")
        response = await client.get("/v1/keys", params={"prefix": "app/"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "revision": 8,
            "items": [
                {"key": "app/a", "value": b64(b"again"), "create_revision": 2, "mod_revision": 8, "version": 2},
                {"key": "app/b", "value": b64(b"app/b"), "create_revision": 1, "mod_revision": 1, "version": 1},
                {"key": "app/z", "value": b64(b"app/z"), "create_revision": 4, "mod_revision": 4, "version": 1},
                {"key": "app/é", "value": b64("app/é".encode()), "create_revision": 3, "mod_revision": 3, "version": 1},
            ],
            "next_page_token": None,
        }
        keys_only = (await client.get("/v1/keys", params={"prefix": "ap", "keys_only": "true"})).json()
        assert [item["key"] for item in keys_only["items"]] == ["ap", "app/a", "app/b", "app/z", "app/é", "apq"]
        assert all("value" not in item for item in keys_only["items"])

    run_against(check)


def test_pages_of_one_listing_show_the_revision_the_first_page_pinned() -> None:
    """Writes between pages do not show: later pages answer the first page's revision and state."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(5):
            await client.put(f"/v1/key/k{n}", content=b"old")
        first = (await client.get("/v1/keys", params={"limit": "2"})).json()
        assert [item["key"] for item in first["items"]] == ["k0", "k1"]
        assert first["revision"] == 5
        await client.delete("/v1/key/k2")
        await client.put("/v1/key/k3", content=b"new")
        await client.put("/v1/key/k35", content=b"new")
        second = (await client.get("/v1/keys", params={"limit": "2", "page_token": first["next_page_token"]})).json()
        assert second["revision"] == 5
        assert [(item["key"], item["value"]) for item in second["items"]] == [("k2", b64(b"old")), ("k3", b64(b"old"))]
        third = (await client.get("/v1/keys", params={"limit": "2", "page_token": second["next_page_token"]})).json()
        assert [item["key"] for item in third["items"]] == ["k4"]
        assert third["next_page_token"] is None
        fresh = (await client.get("/v1/keys")).json()
        assert (fresh["revision"], [item["key"] for item in fresh["items"]]) == (8, ["k0", "k1", "k3", "k35", "k4"])

    run_against(check)


def test_a_revision_out_of_the_history_is_410_history_compacted() -> None:
    """When the pinned revision has left the bounded history the next page is 410 with the oldest revision."""

    async def main() -> None:
        service = Service(MemoryLog(), history_bytes=1000)
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
            for n in range(3):
                await client.put(f"/v1/key/k{n}", content=b"v")
            first = (await client.get("/v1/keys", params={"limit": "1"})).json()
            for _ in range(20):
                await client.put("/v1/key/k1", content=b"x" * 100)
            gone = await client.get("/v1/keys", params={"limit": "1", "page_token": first["next_page_token"]})
            assert gone.status_code == 410
            body = gone.json()
            oldest = service.store.history.oldest_revision
            assert oldest > 3
            assert body == {
                "error": "history_compacted",
                "message": f"that revision is no longer retained; the oldest available is {oldest}: ask for revision "
                f"{oldest} or later (start_revision={oldest} for a watch), or read without a revision for the current "
                "state; more history is kept with a larger TUCO_HISTORY_MAX_BYTES",
                "oldest_revision": oldest,
            }
        await service.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"limit": "0"}, "invalid_parameter", "limit must be a whole number from 1 to 1000"),
        ({"limit": "1001"}, "invalid_parameter", "limit must be a whole number from 1 to 1000"),
        ({"limit": "ten"}, "invalid_parameter", "limit must be a whole number from 1 to 1000"),
        ({"keys_only": "maybe"}, "invalid_parameter", "keys_only must be true or false"),
        ({"prefix": "\udcff"}, "invalid_parameter", "prefix is not valid UTF-8 after percent-decoding"),
        (
            {"page_token": "garbage"},
            "invalid_page_token",
            "the page token is not one this server issued: send next_page_token as it came, or start the listing "
            "again without page_token",
        ),
        (
            {"page_token": encode_page_token(99, "a1", "")},
            "invalid_page_token",
            "the page token is for a revision this server has not reached (another server's, or one restored from "
            "an older backup): start the listing again without page_token",
        ),
        (
            {"prefix": "b", "page_token": encode_page_token(0, "a1", "a")},
            "invalid_page_token",
            "the page token belongs to a listing of another prefix: send the prefix it was issued for, or start the "
            "listing again without page_token",
        ),
    ],
)
def test_bad_listing_parameters_are_400(params: dict[str, str], code: str, message: str) -> None:
    """Limits out of 1..1000, a non-boolean keys_only, undecodable prefixes and foreign tokens get 400."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        if params.get("prefix") == "\udcff":
            response = await client.get("/v1/keys?prefix=%FF")
        else:
            response = await client.get("/v1/keys", params=params)
        assert response.status_code == 400
        assert response.json() == {"error": code, "message": message}

    run_against(check)


def test_default_limit_is_100_and_at_most_1000_items_come_per_page() -> None:
    """Without limit a page holds 100 items; limit=1000 holds 1000; the token leads to the rest."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(1200):
            service.store.apply(_put_event(service, f"k{n:05d}"))
        page = (await client.get("/v1/keys", params={"keys_only": "1"})).json()
        assert len(page["items"]) == 100
        big = (await client.get("/v1/keys", params={"limit": "1000"})).json()
        assert (len(big["items"]), big["items"][-1]["key"]) == (1000, "k00999")
        rest = (await client.get("/v1/keys", params={"limit": "1000", "page_token": big["next_page_token"]})).json()
        assert (len(rest["items"]), rest["next_page_token"]) == (200, None)

    run_against(check)


def _put_event(service: Service, key: str) -> Any:
    from tuco.core.events import Event, EventType

    return Event(service.store.last_sequence + 1, EventType.PUT, key, b"v")


def test_reserved_names_are_resources_and_keys_with_those_names_live_under_key() -> None:
    """/v1/keys lists, /v1/openapi.json is the API's description, and keys with those names live at /v1/key/."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/keys", content=b"a key")).status_code == 201
        assert (await client.get("/v1/key/keys")).content == b"a key"
        listing = await client.get("/v1/keys")
        assert [item["key"] for item in listing.json()["items"]] == ["keys"]
        reserved = await client.get("/v1/openapi.json")
        assert (reserved.status_code, reserved.json()["openapi"]) == (200, "3.1.0")
        assert (await client.put("/v1/key/openapi.json", content=b"a key too")).status_code == 201
        assert (await client.get("/v1/key/openapi.json")).content == b"a key too"
        refused = await client.put("/v1/keys", content=b"v")
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD, DELETE")
        assert (await client.put("/v1/plain", content=b"p")).status_code == 201
        assert (await client.get("/v1/key/plain")).content == b"p"

    run_against(check)


_KEYS = st.sampled_from(["a", "a/1", "a/2", "a/3", "ab", "b", "b/1", "é", "a/é"])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _KEYS, st.binary(max_size=3)),
        st.tuples(st.just("delete"), _KEYS, st.just(b"")),
        st.tuples(st.just("page"), st.sampled_from(["", "a", "a/", "b"]), st.integers(1, 3)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
@example(ops=[("put", "a", b""), ("put", "a/1", b""), ("page", "", 1), ("delete", "a/1", b""), ("put", "b", b"")])
def test_paged_listings_interleaved_with_writes_equal_the_store_at_the_pinned_revision(
    ops: list[tuple[str, str, Any]],
) -> None:
    """Listings advance one page per step among random puts and deletes; each equals the model at its revision."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        model: dict[str, bytes] = {}
        states: dict[int, dict[str, bytes]] = {0: {}}
        open_listings: list[dict[str, Any]] = []

        async def step(listing: dict[str, Any]) -> bool:
            query = {"prefix": listing["prefix"], "limit": str(listing["limit"])}
            if listing["token"]:
                query["page_token"] = listing["token"]
            page = (await client.get("/v1/keys", params=query)).json()
            listing.setdefault("revision", page["revision"])
            assert page["revision"] == listing["revision"]
            assert len(page["items"]) <= listing["limit"]
            listing["items"] += [(item["key"], base64.b64decode(item["value"])) for item in page["items"]]
            listing["token"] = page["next_page_token"]
            if listing["token"] is not None:
                return False
            state = states[listing["revision"]]
            expected = sorted((k, v) for k, v in state.items() if k.startswith(listing["prefix"]))
            assert listing["items"] == expected
            return True

        for kind, key, arg in ops:
            if kind == "put":
                response = await client.put(path(key), content=arg)
                model[key] = arg
                states[int(response.headers["x-tuco-revision"])] = dict(model)
            elif kind == "delete":
                response = await client.delete(path(key))
                model.pop(key, None)
                states[int(response.headers["x-tuco-revision"])] = dict(model)
            else:
                open_listings.append({"prefix": key, "limit": arg, "token": None, "items": []})
            for listing in list(open_listings):
                if await step(listing):
                    open_listings.remove(listing)
        for listing in open_listings:
            while not await step(listing):
                pass

    run_against(check)
