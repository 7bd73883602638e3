"""A read-through replica's ``?consistent=true`` reads the database's row, never its cache (real PostgreSQL).

The row is changed behind the change feed's back (an UPDATE of ``tuco_state`` that writes no
event), so the cache keeps the old value: a default read shows the cache is in use, and only
a read that asked the database can see the new one.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.fix_db import fetch
from tuco.assembly import build_service
from tuco.cache import ReadThrough
from tuco.config import LogBackend, StateMode, load_settings
from tuco.http.asgi import ASGIApp

pytestmark = pytest.mark.postgres


def test_a_consistent_read_on_a_cache_replica_asks_the_database_even_for_a_cached_key(pg_dsn: str) -> None:
    """Cached "v1", row changed to "db" without an event: GET answers the cache's v1, ?consistent=true "db"."""

    async def main() -> None:
        settings = load_settings(log_backend=LogBackend.POSTGRES, database_url=pg_dsn, state=StateMode.CACHE)
        service = build_service(settings)
        reads = service.reads
        assert isinstance(reads, ReadThrough)
        await service.start()
        try:
            transport = httpx.ASGITransport(app=ASGIApp(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                assert (await client.put("/v1/key/k", content=b"v1")).status_code == 201
                assert (await client.get("/v1/key/k")).content == b"v1"  # a miss: now cached
                hits = reads.cache.hits
                assert (await client.get("/v1/key/k")).content == b"v1"
                assert reads.cache.hits == hits + 1  # answered from the cache
                await fetch(pg_dsn, "UPDATE tuco_state SET value = 'db' WHERE key = 'k'")
                stale = await client.get("/v1/key/k")
                assert (stale.status_code, stale.content) == (200, b"v1")  # the cache, as a default read may be
                for _ in range(2):
                    fresh = await client.get("/v1/key/k", params={"consistent": "true"})
                    assert (fresh.status_code, fresh.content, fresh.headers["etag"]) == (200, b"db", '"1"')
                await fetch(pg_dsn, "DELETE FROM tuco_state WHERE key = 'k'")
                gone = await client.get("/v1/key/k", params={"consistent": "true"})
                assert (gone.status_code, gone.json()["error"]) == (404, "no_such_key")
        finally:
            await service.aclose()

    asyncio.run(main())
