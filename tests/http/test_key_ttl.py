"""Touch and persist (``POST``/``DELETE /v1/keys/{key}/ttl``): a key's deadline changes, its value does not travel."""

from __future__ import annotations

import httpx
import pytest

from tests.http.secured import FRONT_ENDS, run_secured, token_for
from tests.http.test_auth import ADMIN
from tests.http.test_ttl import Clock, expirer_rounds, serve
from tuco.service import Service


@pytest.mark.parametrize("front", ["native", "asgi"])
def test_touch_sets_a_deadline_from_now_and_persist_removes_it(front: str) -> None:
    """Touch: expires ttl after the log's clock, same value, new revision; the key goes at that deadline."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        put = await client.put("/v1/key/k", content=b"\x00value")
        assert put.status_code == 201
        revision = int(put.headers["etag"].strip('"'))
        touched = await client.post("/v1/keys/k/ttl", params={"ttl": "30s"})
        assert touched.status_code == 200
        assert touched.headers["etag"] == f'"{revision + 1}"'
        assert touched.headers["x-tuco-expires-at"] == str(clock.now + 30_000)
        got = await client.get("/v1/key/k")
        assert (got.content, got.headers["etag"], got.headers["x-tuco-expires-at"]) == (
            b"\x00value",
            f'"{revision + 1}"',
            str(clock.now + 30_000),
        )
        persisted = await client.delete("/v1/keys/k/ttl")
        assert (persisted.status_code, persisted.headers["x-tuco-expires-at"]) == (200, "0")
        assert "x-tuco-expires-at" not in (await client.get("/v1/key/k")).headers
        assert (await client.post("/v1/keys/k/ttl", params={"ttl": "2s"})).status_code == 200
        clock.advance(2_001)
        await expirer_rounds(service)
        assert (await client.get("/v1/key/k")).status_code == 404

    serve(front, check)


@pytest.mark.parametrize("front", ["native", "asgi"])
def test_touch_refuses_what_it_cannot_do(front: str) -> None:
    """An absent key is 404 no_such_key; a missing or bad ttl 400; GET is 405; a key with slashes is one segment."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        absent = await client.post("/v1/keys/nope/ttl", params={"ttl": "5s"})
        assert (absent.status_code, absent.json()["error"]) == (404, "no_such_key")
        assert (await client.delete("/v1/keys/nope/ttl")).json()["error"] == "no_such_key"
        await client.put("/v1/key/a%2Fb", content=b"v")
        missing = await client.post("/v1/keys/a%2Fb/ttl")
        assert (missing.status_code, missing.json()["error"]) == (400, "invalid_parameter")
        bad = await client.post("/v1/keys/a%2Fb/ttl", params={"ttl": "soon"})
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_parameter")
        assert (await client.get("/v1/keys/a%2Fb/ttl")).status_code == 405
        assert (await client.post("/v1/keys/a%2Fb/ttl", params={"ttl": "1m"})).status_code == 200

    serve(front, check)


@FRONT_ENDS
def test_touch_and_persist_need_write_on_the_key(front_end: str) -> None:
    """A token that may only read, or write elsewhere, gets 403 and the deadline is unchanged; write on it, 200."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/a%2Fx", content=b"v", headers=ADMIN)).status_code == 201
        reader = await token_for(client, ("", "read"))
        elsewhere = await token_for(client, ("b/", "write"))
        writer = await token_for(client, ("a/", "write"))
        for headers in (reader, elsewhere):
            refused = await client.post("/v1/keys/a%2Fx/ttl", params={"ttl": "5s"}, headers=headers)
            assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
            assert (await client.delete("/v1/keys/a%2Fx/ttl", headers=headers)).status_code == 403
        assert "x-tuco-expires-at" not in (await client.get("/v1/key/a%2Fx", headers=ADMIN)).headers
        assert (await client.post("/v1/keys/a%2Fx/ttl", params={"ttl": "5s"}, headers=writer)).status_code == 200
        assert (await client.post("/v1/keys/a%2Fx/ttl", params={"ttl": "5s"})).status_code == 401

    run_secured(front_end, check)
