"""Helpers for authorization tests over real loopback sockets: a service with tokens on, behind either front end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from tests.http.test_auth import ADMIN, BOOTSTRAP, bearer
from tuco.core.tokens import Access, digest
from tuco.http.api import KeyValueAPI
from tuco.http.asgi import ASGIApp
from tuco.http.server import ServerSettings, start_server
from tuco.observability import Metrics
from tuco.service import Limits, Service
from tuco.testing import MemoryLog
from tuco.watchers import WatchSettings

FRONT_ENDS = pytest.mark.parametrize("front_end", ["native", "asgi"])
SecuredCheck = Callable[[httpx.AsyncClient, Service], Awaitable[None]]


def secured_service(
    log: Any = None, *, limits: Limits | None = None, watch: WatchSettings | None = None, **service: Any
) -> Service:
    """A service with ``TUCO_AUTH=token`` and the test bootstrap token."""
    return Service(
        log or MemoryLog(),
        limits or Limits(),
        Metrics(),
        access=Access(True, digest(BOOTSTRAP.encode())),
        watch_settings=watch,
        **service,
    )


@contextlib.asynccontextmanager
async def served_secured(front_end: str, service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """``service`` started and served on a free loopback port by the native server or uvicorn; a client for it."""
    await service.start()
    try:
        if front_end == "native":
            server = await start_server(
                KeyValueAPI(service).handle,
                host="127.0.0.1",
                port=0,
                settings=ServerSettings(max_txn_body_bytes=service.limits.txn_body_bytes),  # as runtime.py
            )
            port = server.addresses[0][1]
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                    yield client
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
                    yield client
            finally:
                service.end_watches()
                userver.should_exit = True
                await asyncio.wait_for(task, 10)
    finally:
        await service.aclose()


def run_secured(front_end: str, check: SecuredCheck, service: Service | None = None) -> None:
    """Run ``check`` against a secured service (a fresh one by default) on a fresh loop."""

    async def main() -> None:
        served = service or secured_service()
        async with served_secured(front_end, served) as client:
            await check(client, served)

    asyncio.run(main())


async def token_for(client: httpx.AsyncClient, *grants: tuple[str, str], **extra: object) -> dict[str, str]:
    """The Authorization header of a new token with ``grants`` (``(prefix, permission)`` pairs)."""
    body = {"grants": [{"prefix": p, "permission": perm} for p, perm in grants], **extra}
    created = await client.post("/v1/tokens", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return bearer(str(created.json()["token"]))


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10.0) -> None:
    """Poll ``check`` until it holds (a generous deadline: the machine may be busy); fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        await asyncio.sleep(0.02)
