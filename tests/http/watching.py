"""Helpers for the watch and long-poll tests: both front ends on real loopback sockets, and an SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from tuco.http.api import KeyValueAPI
from tuco.http.asgi import ASGIApp
from tuco.http.server import ServerSettings, start_server
from tuco.service import Limits, Service
from tuco.testing import MemoryLog
from tuco.watchers import WatchSettings

FRONT_ENDS = pytest.mark.parametrize("front_end", ["native", "asgi"])


@dataclass
class Frame:
    """One SSE frame as a client sees it (comments gathered apart)."""

    event: str
    id: str | None
    data: str
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SSE:
    """Reads frames from a streaming httpx response, exactly as the WHATWG parser splits them."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_bytes()
        self._buffer = b""
        self.comments: list[str] = []
        self.raw = b""

    async def frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame with an event or data (None at the end of the stream)."""
        async with asyncio.timeout(timeout):
            while True:
                while b"\n\n" not in self._buffer:
                    try:
                        chunk = await anext(self._chunks)
                    except StopAsyncIteration:
                        return None
                    self.raw += chunk
                    self._buffer += chunk
                block, _, self._buffer = self._buffer.partition(b"\n\n")
                fields: dict[str, str] = {}
                data: list[str] = []
                for line in block.decode().split("\n"):
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                        continue
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
                if data or "event" in fields or "retry" in fields:
                    retry = int(fields["retry"]) if "retry" in fields else None
                    return Frame(fields.get("event", "message"), fields.get("id"), "\n".join(data), retry)

    async def frames(self, count: int, timeout: float = 5.0, skip: tuple[str, ...] = ("progress",)) -> list[Frame]:
        """The next ``count`` frames that are not of the ``skip`` kinds."""
        found: list[Frame] = []
        while len(found) < count:
            frame = await self.frame(timeout)
            if frame is None:
                break
            if frame.event not in skip and frame.retry is None:
                found.append(frame)
        return found


Check = Callable[[httpx.AsyncClient, Service], Awaitable[None]]


@contextlib.asynccontextmanager
async def served(
    front_end: str, *, log: Any = None, watch: WatchSettings | None = None, history_bytes: int = 32 << 20
) -> AsyncIterator[tuple[httpx.AsyncClient, Service]]:
    """A started service behind the native server or uvicorn on a free port, and a client for it."""
    service = Service(log or MemoryLog(), Limits(), watch_settings=watch, history_bytes=history_bytes)
    await service.start()
    try:
        if front_end == "native":
            server = await start_server(
                KeyValueAPI(service).handle, host="127.0.0.1", port=0, settings=ServerSettings()
            )
            port = server.addresses[0][1]
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                    yield client, service
            finally:
                service.end_watches()
                await server.aclose(grace=2.0)
        else:
            config = uvicorn.Config(
                ASGIApp(service), host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False
            )
            userver = uvicorn.Server(config)
            task = asyncio.create_task(userver.serve())
            while not userver.started:
                await asyncio.sleep(0.01)
            port = userver.servers[0].sockets[0].getsockname()[1]
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                    yield client, service
            finally:
                service.end_watches()
                userver.should_exit = True
                await asyncio.wait_for(task, 10)
    finally:
        await service.aclose()


def run_served(front_end: str, check: Check, **options: Any) -> None:
    """Run ``check`` against a served service on a fresh loop."""

    async def main() -> None:
        async with served(front_end, **options) as (client, service):
            await check(client, service)

    asyncio.run(main())
