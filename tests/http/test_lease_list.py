"""GET /v1/leases lists the caller's own live leases, a page at a time; nobody sees another tenant's."""

from __future__ import annotations

import httpx
import pytest

from tests.http.secured import FRONT_ENDS, run_secured, token_for
from tests.http.test_auth import ADMIN
from tests.http.test_ttl import FRONTS, START, Clock, serve
from tuco.service import Service


@pytest.mark.parametrize("front", FRONTS)
def test_the_list_shows_each_live_lease_with_its_remaining_time_and_key_count(front: str) -> None:
    """Each lease: id, ttl, expires_at, remaining (s) and key_count, in id order; an ended one is gone."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        empty = await client.get("/v1/leases")
        assert (empty.status_code, empty.json()) == (200, {"leases": [], "next_after": None})
        assert (await client.post("/v1/leases", json={"ttl": 30})).status_code == 201
        assert (await client.post("/v1/leases", json={"ttl": "500ms"})).status_code == 201
        assert (await client.put("/v1/key/a", params={"lease": "1"}, content=b"x")).status_code == 201
        listed = await client.get("/v1/leases")
        assert (listed.status_code, listed.headers["x-tuco-revision"]) == (200, "3")
        assert listed.json() == {
            "leases": [
                {"id": 1, "ttl": 30.0, "expires_at": START + 30_000, "remaining": 30.0, "key_count": 1},
                {"id": 2, "ttl": 0.5, "expires_at": START + 500, "remaining": 0.5, "key_count": 0},
            ],
            "next_after": None,
        }
        head = await client.head("/v1/leases")
        assert (head.status_code, head.content) == (200, b"")
        clock.advance(1000)
        later = await client.get("/v1/leases")
        assert [lease["id"] for lease in later.json()["leases"]] == [1]
        assert later.json()["leases"][0]["remaining"] == 29.0

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_the_list_is_paged_by_limit_and_after(front: str) -> None:
    """``limit`` leases a page; ``next_after`` is the ``after`` of the next page, null on the last; bad values 400."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        for _ in range(5):
            assert (await client.post("/v1/leases", json={"ttl": 60})).status_code == 201
        first = (await client.get("/v1/leases", params={"limit": "2"})).json()
        assert ([lease["id"] for lease in first["leases"]], first["next_after"]) == ([1, 2], 2)
        second = (await client.get("/v1/leases", params={"limit": "2", "after": "2"})).json()
        assert ([lease["id"] for lease in second["leases"]], second["next_after"]) == ([3, 4], 4)
        last = (await client.get("/v1/leases", params={"limit": "2", "after": "4"})).json()
        assert ([lease["id"] for lease in last["leases"]], last["next_after"]) == ([5], None)
        for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"after": "-1"}):
            refused = await client.get("/v1/leases", params=params)
            assert (refused.status_code, refused.json()["error"]) == (400, "invalid_parameter"), params

    serve(front, check)


@FRONT_ENDS
def test_a_tenant_never_sees_another_tenants_leases(front_end: str) -> None:
    """A lists only A's leases and B only B's; an admin lists every one; no credential is 401."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        a = await token_for(client, ("a/", "write"))
        b = await token_for(client, ("b/", "read"), ("b/", "write"))
        admin = await token_for(client, ("", "admin"))
        granted: dict[str, list[int]] = {"a": [], "b": []}
        for name, headers in (("a", a), ("b", b), ("a", a)):
            answer = await client.post("/v1/leases", json={"ttl": 600}, headers=headers)
            assert answer.status_code == 201, answer.text
            granted[name].append(int(answer.json()["id"]))
        for name, headers in (("a", a), ("b", b)):
            listed = await client.get("/v1/leases", headers=headers)
            assert listed.status_code == 200, listed.text
            assert [lease["id"] for lease in listed.json()["leases"]] == granted[name]
        every = await client.get("/v1/leases", headers=admin)
        assert sorted(lease["id"] for lease in every.json()["leases"]) == sorted(granted["a"] + granted["b"])
        assert len((await client.get("/v1/leases", headers=ADMIN)).json()["leases"]) == 3
        assert (await client.get("/v1/leases")).status_code == 401

    run_secured(front_end, check)
