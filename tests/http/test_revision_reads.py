"""Reads at a revision: GET /v1/key/{k}?revision=N and GET /v1/keys?revision=N against snapshots of a workload."""

from __future__ import annotations

import asyncio
import base64
import random
from urllib.parse import quote

import httpx
import pytest

from tuco.http.api import KeyValueAPI
from tuco.http.asgi import ASGIApp
from tuco.http.server import start_server
from tuco.log.postgres import PostgresTransactionLog
from tuco.service import Limits, Service
from tuco.testing import MemoryLog

KEYS = ["a", "b", "c/1", "c/2", "d"]


def run(front: str, history_bytes: int, check: object, dsn: str | None = None) -> None:
    async def main() -> None:
        log = PostgresTransactionLog(dsn) if dsn is not None else MemoryLog()
        service = Service(log, Limits(), history_bytes=history_bytes)
        await service.start()
        try:
            if front == "asgi":
                transport = httpx.ASGITransport(app=ASGIApp(service))
                async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                    await check(client, service)  # type: ignore[operator]
                return
            server = await start_server(KeyValueAPI(service).handle, host="127.0.0.1", port=0)
            try:
                host, port = server.addresses[0]
                async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                    await check(client, service)  # type: ignore[operator]
            finally:
                await server.aclose(grace=1.0)
        finally:
            await service.aclose()

    asyncio.run(main())


State = dict[str, tuple[bytes, int, int, int]]


async def workload(client: httpx.AsyncClient, rng: random.Random, steps: int) -> dict[int, State]:
    """Random puts, deletes and transactions; the state after each revision, as listings then showed it."""
    snapshots: dict[int, State] = {}
    for _ in range(steps):
        choice = rng.random()
        key = rng.choice(KEYS)
        if choice < 0.5:
            await client.put(f"/v1/key/{quote(key, safe='')}", content=bytes([rng.randint(0, 255)]))
        elif choice < 0.7:
            await client.delete(f"/v1/key/{quote(key, safe='')}")
        else:
            chosen = rng.sample(KEYS, 2)
            body = {"success": [{"put": {"key": k, "value": base64.b64encode(b"t").decode()}} for k in chosen]}
            if rng.random() < 0.3:
                body = {"success": [{"delete_prefix": {"prefix": "c/"}}]}
            await client.post("/v1/txn", json=body)
        listing = (await client.get("/v1/keys")).json()
        snapshots[listing["revision"]] = {
            item["key"]: (
                base64.b64decode(item["value"]),
                item["create_revision"],
                item["mod_revision"],
                item["version"],
            )
            for item in listing["items"]
        }
    return snapshots


@pytest.mark.parametrize("front", ["asgi", "native"])
def test_reads_at_every_revision_equal_the_snapshots(front: str) -> None:
    """Each key and each listing at every revision seen answers exactly what was current then, headers included."""
    run(front, 32 << 20, _check_snapshots)


@pytest.mark.postgres
def test_reads_at_every_revision_on_postgresql(pg_dsn: str) -> None:
    """The same on the PostgreSQL log: transactions decided in the database, the history kept by the replica."""
    run("native", 32 << 20, _check_snapshots, pg_dsn)


async def _check_snapshots(client: httpx.AsyncClient, service: Service) -> None:
    """Reads at every revision a workload saw, against its snapshots; ahead is 409, 0 is 400."""

    snapshots = await workload(client, random.Random(5), 120)
    for revision, state in snapshots.items():
        listing = (await client.get(f"/v1/keys?revision={revision}")).json()
        assert listing["revision"] == revision
        assert {i["key"]: base64.b64decode(i["value"]) for i in listing["items"]} == {k: v[0] for k, v in state.items()}
        for key in KEYS:
            read = await client.get(f"/v1/key/{quote(key, safe='')}", params={"revision": revision})
            assert read.headers["x-tuco-revision"] == str(revision)
            if key not in state:
                assert read.status_code == 404
                continue
            value, created, modified, version = state[key]
            assert (read.status_code, read.content, read.headers["etag"]) == (200, value, f'"{modified}"')
            assert (read.headers["x-tuco-create-revision"], read.headers["x-tuco-version"]) == (
                str(created),
                str(version),
            )
    ahead = await client.get("/v1/key/a", params={"revision": service.revision + 1})
    assert (ahead.status_code, ahead.json()["error"]) == (409, "revision_ahead")
    assert ahead.json()["message"] == (
        f"revision {service.revision + 1} is ahead of this store, which is at revision {service.revision}: "
        f"read at {service.revision} or lower, or wait for it with wait_revision"
    )
    bad = await client.get("/v1/key/a", params={"revision": "0"})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_parameter")


@pytest.mark.parametrize("front", ["asgi", "native"])
def test_410_exactly_when_the_revision_is_gone(front: str) -> None:
    """With a small history, the oldest retained revision reads; one before it is 410 naming the oldest."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(200):
            await client.put("/v1/key/k", content=b"%d" % n)
        oldest = service.oldest_revision
        assert 1 < oldest < 200
        kept = await client.get("/v1/key/k", params={"revision": oldest})
        assert (kept.status_code, kept.content) == (200, b"%d" % (oldest - 1))
        gone = await client.get("/v1/key/k", params={"revision": oldest - 1})
        assert (gone.status_code, gone.json()) == (
            410,
            {"error": "history_compacted", "message": gone.json()["message"], "oldest_revision": oldest},
        )
        listed = await client.get("/v1/keys", params={"revision": oldest - 1})
        assert (listed.status_code, listed.json()["oldest_revision"]) == (410, oldest)
        plain = await client.get("/v1/key/k")
        assert (plain.headers["x-tuco-create-revision"], plain.headers["x-tuco-version"]) == ("1", "200")

    run(front, 20_000, check)
