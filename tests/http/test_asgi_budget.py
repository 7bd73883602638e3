"""The ASGI front end shares one body budget between requests, like the native server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from tuco.http.asgi import ASGIApp
from tuco.service import Limits, Service
from tuco.testing import MemoryLog


def test_bodies_beyond_the_shared_budget_get_503_server_busy() -> None:
    """While one body holds 600 of 1,000 budget bytes, a 600-byte body is 503 server_busy and a 400-byte one fits."""

    async def main() -> None:
        service = Service(MemoryLog(), Limits(max_value_bytes=1000, max_buffered_bytes=1000))
        await service.start()
        app = ASGIApp(service)
        release = asyncio.Event()

        async def held_body() -> AsyncIterator[bytes]:
            yield b"h" * 100
            await release.wait()
            yield b"h" * 500

        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                holder = asyncio.create_task(
                    client.put("/v1/key/held", content=held_body(), headers={"content-length": "600"})
                )
                async with asyncio.timeout(5):
                    while app.body_bytes_reserved != 600:
                        await asyncio.sleep(0.005)
                refused = await client.put("/v1/key/refused", content=b"r" * 600)
                assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
                assert refused.json() == {
                    "error": "server_busy",
                    "message": "the server is receiving too many request bodies at once; retry shortly",
                }
                assert (await client.put("/v1/key/fits", content=b"f" * 400)).status_code == 201
                release.set()
                assert (await holder).status_code == 201
                assert app.body_bytes_reserved == 0
                assert (await client.put("/v1/key/whole", content=b"w" * 1000)).status_code == 201
                assert "refused" not in service.store
                assert service.store.get("held") == b"h" * 600
        finally:
            await service.aclose()

    asyncio.run(main())
