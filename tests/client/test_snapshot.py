"""The clients' snapshot() against a real API in process: the bytes of a whole snapshot, and the server's refusal."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tuco.client import AsyncClient
from tuco.core.snapshot import KeyRecord, SnapshotDecoder
from tuco.errors import SnapshotError
from tuco.http.asgi import ASGIApp
from tuco.service import Service
from tuco.testing import MemoryLog


def test_async_client_snapshot_yields_a_whole_snapshot_and_raises_the_refusal() -> None:
    """AsyncClient.snapshot() streams bytes that decode to the keys; with two running, it raises SnapshotError."""

    async def main() -> None:
        service = Service(MemoryLog())
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        client = AsyncClient("http://tuco", transport=transport)
        try:
            await client.put("a", b"\x00\xff")
            await client.put("b", b"")
            decoder = SnapshotDecoder()
            items = []
            async for chunk in client.snapshot():
                items += decoder.feed(chunk)
            assert decoder.finish().revision == 2
            assert items == [KeyRecord("a", b"\x00\xff", 1, 1, 1), KeyRecord("b", b"", 2, 2, 1)]
            held = [service.snapshot(), service.snapshot()]
            with pytest.raises(SnapshotError) as refused:
                async for _ in client.snapshot():
                    pass
            assert refused.value.code == "snapshot_unavailable"
            for stream in held:
                stream.close()
        finally:
            await client.aclose()
            await service.aclose()

    asyncio.run(main())
