"""Shared limits hold exactly under concurrency, and one principal cannot take all of them."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.http.secured import FRONT_ENDS, run_secured, secured_service, token_for
from tests.http.test_auth import ADMIN
from tests.http.watching import SSE
from tuco.service import Limits, Service
from tuco.watchers import WatchSettings

_GRANTERS = 64


async def _all_at_once(count: int, request: object) -> Counter[int]:
    """``count`` calls of ``request(i)`` from 64 concurrent clients; how many got each status."""
    gate = asyncio.Semaphore(_GRANTERS)

    async def one(i: int) -> int:
        async with gate:
            response: httpx.Response = await request(i)  # type: ignore[operator]
            return response.status_code

    return Counter(await asyncio.gather(*(one(i) for i in range(count))))


@FRONT_ENDS
def test_the_lease_cap_holds_exactly_under_64_concurrent_granters(front_end: str) -> None:
    """300 grants from 64 concurrent clients under TUCO_MAX_LEASES=120: exactly 120 leases, the rest 429; a revoke
    frees a slot."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        writers = [await token_for(client, ("", "write")) for _ in range(_GRANTERS)]
        statuses = await _all_at_once(
            300, lambda i: client.post("/v1/leases", json={"ttl": 600}, headers=writers[i % _GRANTERS])
        )
        assert statuses == {201: 120, 429: 180}
        assert len(service.store.leases) == 120
        refused = await client.post("/v1/leases", json={"ttl": 600}, headers=ADMIN)
        assert (refused.status_code, refused.json()["error"]) == (429, "lease_limit")
        assert "120" in refused.json()["message"] and "TUCO_MAX_LEASES" in refused.json()["message"]
        some = next(iter(service.store.leases))
        assert (await client.delete(f"/v1/leases/{some.id}", headers=ADMIN)).status_code == 200
        assert (await client.post("/v1/leases", json={"ttl": 600}, headers=ADMIN)).status_code == 201

    run_secured(front_end, check, secured_service(limits=Limits(max_leases=120, max_leases_per_principal=120)))


@FRONT_ENDS
def test_the_keys_per_lease_cap_holds_exactly_under_64_concurrent_attaches(front_end: str) -> None:
    """200 different keys attached to one lease by 64 concurrent clients under a cap of 50: exactly 50 attach."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        lease = (await client.post("/v1/leases", json={"ttl": 600}, headers=ADMIN)).json()["id"]
        statuses = await _all_at_once(
            200, lambda i: client.put(f"/v1/key/k{i}?lease={lease}", content=b"v", headers=ADMIN)
        )
        assert statuses == {201: 50, 429: 150}
        found = service.store.leases.get(lease)
        assert found is not None and len(found.keys) == 50

    run_secured(front_end, check, secured_service(limits=Limits(max_keys_per_lease=50)))


@FRONT_ENDS
def test_the_token_cap_holds_exactly_under_concurrent_creations(
    front_end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 token creations at once under a cap of 12: exactly 12 tokens exist, the rest 429 token_limit."""
    import tuco.limits

    monkeypatch.setattr(tuco.limits, "MAX_TOKENS", 12)

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        body = {"grants": [{"prefix": "a/", "permission": "read"}]}
        statuses = await _all_at_once(40, lambda i: client.post("/v1/tokens", json=body, headers=ADMIN))
        assert statuses == {201: 12, 429: 28}
        assert len(service.store.tokens) == 12

    run_secured(front_end, check)


@FRONT_ENDS
def test_one_principal_holds_at_most_its_share_of_the_leases(front_end: str) -> None:
    """With TUCO_MAX_LEASES=40, a token gets its quarter (10) and then 429; another token and an admin still get
    theirs; a revoke gives the share back."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        greedy = await token_for(client, ("a/", "write"))
        other = await token_for(client, ("b/", "write"))
        statuses = await _all_at_once(30, lambda i: client.post("/v1/leases", json={"ttl": 600}, headers=greedy))
        assert statuses == {201: 10, 429: 20}
        refused = await client.post("/v1/leases", json={"ttl": 600}, headers=greedy)
        assert (refused.status_code, refused.json()["error"]) == (429, "lease_limit")
        assert "TUCO_MAX_LEASES_PER_PRINCIPAL" in refused.json()["message"]
        assert (await client.post("/v1/leases", json={"ttl": 600}, headers=other)).status_code == 201
        for _ in range(15):  # an admin is held by the whole cap only
            assert (await client.post("/v1/leases", json={"ttl": 600}, headers=ADMIN)).status_code == 201
        mine = next(lease.id for lease in service.store.leases if lease.owner != "bootstrap")
        assert (await client.delete(f"/v1/leases/{mine}", headers=greedy)).status_code == 200
        assert (await client.post("/v1/leases", json={"ttl": 600}, headers=greedy)).status_code == 201

    run_secured(front_end, check, secured_service(limits=Limits(max_leases=40)))


@FRONT_ENDS
def test_one_principal_holds_at_most_its_share_of_the_watchers(front_end: str) -> None:
    """With TUCO_WATCH_MAX_WATCHERS=8, a token opens 2 watches, the third is 429 watcher_limit; another token
    still can; closing one gives the share back."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        greedy = await token_for(client, ("a/", "read"))
        other = await token_for(client, ("a/", "read"))
        async with (
            client.stream("GET", "/v1/watch?prefix=a%2F", headers=greedy) as first,
            client.stream("GET", "/v1/watch?prefix=a%2F", headers=greedy) as second,
        ):
            assert (first.status_code, second.status_code) == (200, 200)
            third = await client.get("/v1/watch?prefix=a%2F", headers=greedy)
            assert (third.status_code, third.json()["error"]) == (429, "watcher_limit")
            assert "TUCO_WATCH_MAX_WATCHERS_PER_PRINCIPAL" in third.json()["message"]
            async with client.stream("GET", "/v1/watch?prefix=a%2F", headers=other) as theirs:
                assert theirs.status_code == 200
                await SSE(theirs).frame()
        deadline = asyncio.get_running_loop().time() + 10
        while service.watch_count:  # the closed streams are noticed by the server
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        async with client.stream("GET", "/v1/watch?prefix=a%2F", headers=greedy) as again:
            assert again.status_code == 200

    run_secured(front_end, check, secured_service(watch=WatchSettings(max_watchers=8, heartbeat_seconds=0.2)))
