"""TUCO_MAX_STORE_BYTES and TUCO_MAX_STORE_KEYS in process: 507 store_full at the bound, reads and deletes served."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.http.test_api import run_against
from tuco.core.store import ENTRY_BYTES
from tuco.http.asgi import ASGIApp
from tuco.observability import Metrics
from tuco.service import Limits, Service
from tuco.testing import MemoryLog

# Room for exactly three keys "k0".."k2" with 100-byte values, not one byte more.
ONE = 2 + 100 + ENTRY_BYTES
BOUND = 3 * ONE


def parse_metrics(text: str) -> dict[str, float]:
    """Each unlabelled sample of a Prometheus text exposition by name."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def _fill(client: httpx.AsyncClient, count: int) -> None:
    for n in range(count):
        response = await client.put(f"/v1/key/k{n}", content=b"v" * 100)
        assert response.status_code == 201, response.text


def test_a_write_past_the_byte_bound_is_507_and_reads_deletes_and_later_writes_are_served() -> None:
    """At the bound a new key or a longer value is 507 store_full, nothing stored; reads, deletes and rewrites
    that do not grow the store are served, and a delete makes room again."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await _fill(client, 3)
        revision = service.revision
        refused = await client.put("/v1/key/k3", content=b"v" * 100)
        assert (refused.status_code, refused.json()["error"]) == (507, "store_full")
        assert refused.json()["message"] == (
            f"the store holds {BOUND} bytes and this write would take it past its bound of {BOUND} "
            "(TUCO_MAX_STORE_BYTES): delete keys, or raise the bound"
        )
        assert service.revision == revision and "k3" not in service.store
        assert (await client.put("/v1/key/k0", content=b"v" * 101)).status_code == 507  # one byte longer
        assert (await client.put("/v1/key/k3", params={"ttl": "30s"}, content=b"v")).status_code == 507
        assert (await client.put("/v1/key/k0", content=b"w" * 100)).status_code == 201  # as long: no growth
        assert (await client.put("/v1/key/k1", content=b"w")).status_code == 201  # shorter
        got = await client.get("/v1/key/k2")
        assert (got.status_code, got.content) == (200, b"v" * 100)
        assert [item["key"] for item in (await client.get("/v1/keys")).json()["items"]] == ["k0", "k1", "k2"]
        assert (await client.put("/v1/key/k3", content=b"v" * 100)).status_code == 507  # 99 bytes free: not enough
        assert (await client.delete("/v1/key/k2")).status_code == 200
        assert (await client.put("/v1/key/k3", content=b"v" * 100)).status_code == 201
        assert (await client.put("/v1/key/k4", content=b"v" * 100)).status_code == 507
        assert service.store.bytes == 2 * ONE + (2 + 1 + ENTRY_BYTES)
        assert service.store_refusals == 5

    run_against(check, limits=Limits(max_store_bytes=BOUND))


def test_a_new_key_past_the_key_bound_is_507_and_rewrites_are_not() -> None:
    """With TUCO_MAX_STORE_KEYS=2, a third key is refused; the two keys can be rewritten; a delete makes room."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await _fill(client, 2)
        refused = await client.put("/v1/key/third", content=b"x")
        assert (refused.status_code, refused.json()) == (
            507,
            {
                "error": "store_full",
                "message": "the store holds 2 keys, its bound (TUCO_MAX_STORE_KEYS): delete keys, or raise the bound",
            },
        )
        assert (await client.put("/v1/key/k1", content=b"v" * 500)).status_code == 201
        assert (await client.delete("/v1/key/k0")).status_code == 200
        assert (await client.put("/v1/key/third", content=b"x")).status_code == 201

    run_against(check, limits=Limits(max_store_keys=2, max_store_bytes=0))


def test_full_means_writes_are_being_refused_until_the_store_shrinks() -> None:
    """300 bytes of room: a fourth key is refused though a small one fits; full until a delete frees room."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await _fill(client, 3)
        assert (await client.get("/readyz")).json()["store"]["full"] is False
        assert (await client.put("/v1/key/k3", content=b"v" * 100)).status_code == 507
        assert (await client.get("/readyz")).json()["store"]["full"] is True
        assert (await client.put("/v1/key/s", content=b"")).status_code == 201  # a small key still fits
        assert (await client.get("/readyz")).json()["store"]["full"] is True
        assert (await client.delete("/v1/key/k0")).status_code == 200
        assert (await client.get("/readyz")).json()["store"]["full"] is False

    run_against(check, limits=Limits(max_store_bytes=3 * ONE + 300))


def test_readiness_and_metrics_show_the_store_against_its_bounds() -> None:
    """/readyz stays 200 at the bound with store.full true (an alert, not an outage); /metrics has the gauges."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["store"]) == (
            200,
            {"bytes": 0, "max_bytes": BOUND, "keys": 0, "max_keys": 10_000_000, "full": False},
        )
        await _fill(client, 3)
        assert (await client.put("/v1/key/k3", content=b"v" * 100)).status_code == 507
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["ready"], ready.json()["store"]) == (
            200,
            True,
            {"bytes": 3 * ONE, "max_bytes": BOUND, "keys": 3, "max_keys": 10_000_000, "full": True},
        )
        metrics = parse_metrics((await client.get("/metrics")).text)
        assert metrics["tuco_store_bytes"] == 3 * ONE
        assert metrics["tuco_store_max_bytes"] == BOUND
        assert metrics["tuco_store_max_keys"] == 10_000_000
        assert metrics["tuco_store_full_refusals_total"] == 1

    async def main() -> None:
        service = Service(MemoryLog(), Limits(max_store_bytes=BOUND), Metrics())
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                await check(client, service)
        finally:
            await service.aclose()

    asyncio.run(main())
