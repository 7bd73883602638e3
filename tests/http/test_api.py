"""HTTP semantics in process, through the ASGI front end and httpx.ASGITransport, with the shipped fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from tuco.core.events import Event, Precondition
from tuco.core.origin import Origin
from tuco.errors import LogFailedError
from tuco.http.asgi import ASGIApp
from tuco.service import Limits, Phase, Service
from tuco.testing import MemoryLog

Check = Callable[[httpx.AsyncClient, Service], Awaitable[None]]


def run_against(
    check: Check, *, log: MemoryLog | None = None, limits: Limits | None = None, start: bool = True
) -> None:
    """Start a service on ``log``, serve it in process, run ``check`` with a client, close it."""

    async def main() -> None:
        service = Service(log or MemoryLog(), limits)
        if start:
            await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                await check(client, service)
        finally:
            if start:
                await service.aclose()

    asyncio.run(main())


def test_put_get_delete_round_trip_exact_bytes() -> None:
    """A binary value comes back byte for byte with its type and length; DELETE makes it 404."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        value = bytes(range(256))
        assert (await client.put("/v1/key/bin%2Fkey", content=value)).status_code == 201
        got = await client.get("/v1/key/bin%2Fkey")
        assert (got.status_code, got.content) == (200, value)
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["content-length"] == "256"
        assert service.store.get("bin/key") == value
        assert (await client.delete("/v1/key/bin%2Fkey")).status_code == 200
        missing = await client.get("/v1/key/bin%2Fkey")
        assert missing.status_code == 404
        assert missing.json() == {"error": "no_such_key", "message": "no such key"}

    run_against(check)


def test_empty_value_is_a_value() -> None:
    """PUT with an empty body stores an empty value, which reads back as 200 with no bytes."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/empty", content=b"")).status_code == 201
        got = await client.get("/v1/key/empty")
        assert (got.status_code, got.content, got.headers["content-length"]) == (200, b"", "0")

    run_against(check)


def test_a_failed_log_answers_503_for_writes_and_keeps_reads() -> None:
    """Once a commit fails: the write and every later write get 503, reads still work, readiness is false."""
    log = MemoryLog()

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/kept", content=b"safe")).status_code == 201
        log.fail_next_commit = LogFailedError("disk on fire")
        failed = await client.put("/v1/key/lost", content=b"never")
        assert failed.status_code == 503
        assert failed.json() == {
            "error": "log_failed",
            "message": "not stored: the transaction log failed and takes no more writes; see the server's log",
        }
        later = await client.delete("/v1/key/kept")
        assert (later.status_code, later.json()["error"]) == (503, "log_failed")
        assert (await client.get("/v1/key/kept")).content == b"safe"
        assert (await client.get("/v1/key/lost")).status_code == 404
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["error"] == "log_failed"
        assert (await client.get("/healthz")).status_code == 200
        assert [event.key for event in log.events] == ["kept"]

    run_against(check, log=log)


def test_keys_are_refused_while_replaying() -> None:
    """Before replay finishes, key requests get 503 'starting' and /readyz 503; /healthz is 200."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert service.phase is Phase.STARTING
        starting = await client.get("/v1/key/k")
        assert (starting.status_code, starting.json()["error"]) == (503, "starting")
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).json() == {"status": "alive"}

    run_against(check, start=False)


def test_value_limit_applies_to_declared_and_streamed_bodies() -> None:
    """Over the value limit is 413 whether the length is declared or the body is streamed."""

    async def streamed() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x" * 6

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/ok", content=b"x" * 16)).status_code == 201
        declared = await client.put("/v1/key/big", content=b"x" * 17)
        assert (declared.status_code, declared.json()["error"]) == (413, "value_too_large")
        chunked = await client.put("/v1/key/big", content=streamed())
        assert chunked.status_code == 413
        assert "big" not in service.store

    run_against(check, limits=Limits(max_key_bytes=8, max_value_bytes=16))


def test_consistent_read_on_a_single_process_log() -> None:
    """?consistent=true is accepted on every backend; on a single writer it reads the same value."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await client.put("/v1/key/k", content=b"v")
        got = await client.get("/v1/key/k", params={"consistent": "true"})
        assert (got.status_code, got.content) == (200, b"v")

    run_against(check)


class ExplodingLog(MemoryLog):
    """A log with a bug: writing raises something that is not a tuco error."""

    def write_put(
        self, key: str, value: bytes, precondition: Precondition | None = None, origin: Origin | None = None
    ) -> Awaitable[Event]:
        raise RuntimeError("bug in the log")


def test_a_bug_is_a_500_without_traceback() -> None:
    """An unexpected exception becomes a JSON 500 whose body says nothing of the code."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        response = await client.put("/v1/key/k", content=b"v")
        assert response.status_code == 500
        assert response.json() == {
            "error": "internal_error",
            "message": "the server failed to handle the request; see its log",
        }
        assert "Traceback" not in response.text

    run_against(check, log=ExplodingLog())
