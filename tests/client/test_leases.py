"""The client's lease listing against a real API in process (ASGI): every page, in id order."""

from __future__ import annotations

import asyncio

import httpx

from tuco.client import AsyncClient
from tuco.http.asgi import ASGIApp
from tuco.service import Service
from tuco.testing import MemoryLog


def test_async_client_leases_reads_every_page_in_process() -> None:
    """AsyncClient.leases() follows next_after until the last page and returns every lease in id order."""

    async def main() -> None:
        service = Service(MemoryLog())
        await service.start()
        try:
            transport = httpx.ASGITransport(app=ASGIApp(service))
            client = AsyncClient("http://tuco", transport=transport)
            try:
                for ttl in (10, 20, 30):
                    await client.grant(ttl)
                listed = await client.leases(page_size=2)
                assert [(lease.id, lease.ttl, lease.key_count) for lease in listed] == [
                    (1, 10.0, 0),
                    (2, 20.0, 0),
                    (3, 30.0, 0),
                ]
            finally:
                await client.aclose()
        finally:
            await service.aclose()

    asyncio.run(main())
