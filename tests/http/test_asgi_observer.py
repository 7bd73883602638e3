"""The ASGI front end counts answers for /metrics and echoes X-Request-Id as the native server does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tuco.http.asgi import ASGIApp
from tuco.log.file import FileTransactionLog
from tuco.observability import Metrics
from tuco.service import Limits, Service
from tuco.testing import FailingDisk, MemoryLog

KEY = "/v1/key/{key}"


def _requests_total(text: str) -> dict[tuple[str, str, str], float]:
    for family in text_string_to_metric_families(text):
        if family.name == "tuco_http_requests":
            assert family.type == "counter"
            return {
                (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
                for s in family.samples
                if s.name == "tuco_http_requests_total"
            }
    raise AssertionError("no tuco_http_requests family")


def _refused(text: str) -> dict[str, float]:
    for family in text_string_to_metric_families(text):
        if family.name == "tuco_http_requests_refused":
            return {s.labels["status"]: s.value for s in family.samples if s.name.endswith("_total")}
    raise AssertionError("no tuco_http_requests_refused family")


def test_answers_are_counted_by_method_route_and_status_and_ids_echoed() -> None:
    """Reads, writes, a 405 and an unrouted path are counted under their patterns; a too-large body is a refusal."""

    async def main() -> None:
        service = Service(MemoryLog(), Limits(max_value_bytes=10), Metrics())
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                written = await client.put("/v1/key/a", content=b"1", headers={"X-Request-Id": "w-1"})
                read = await client.get("/v1/key/a", headers={"X-Request-Id": "r-1"})
                plain = await client.get("/v1/key/missing")
                assert (await client.post("/v1/key/a")).status_code == 405
                assert (await client.get("/nowhere")).status_code == 404
                assert (await client.put("/v1/key/big", content=b"x" * 11)).status_code == 413
                scraped = await client.get("/metrics")
        finally:
            await service.aclose()
        assert (written.status_code, written.headers["x-request-id"]) == (201, "w-1")
        assert (read.status_code, read.headers["x-request-id"]) == (200, "r-1")
        assert plain.status_code == 404 and "x-request-id" not in plain.headers
        assert _requests_total(scraped.text) == {
            ("PUT", KEY, "201"): 1.0,
            ("GET", KEY, "200"): 1.0,
            ("GET", KEY, "404"): 1.0,
            ("POST", KEY, "405"): 1.0,
            ("GET", "none", "404"): 1.0,
        }
        assert _refused(scraped.text) == {"413": 1.0}

    asyncio.run(main())


def test_with_the_access_log_every_answer_gets_an_id() -> None:
    """access_log=True: a minted X-Request-Id on each answer without a usable one of its own."""

    async def main() -> None:
        service = Service(MemoryLog(), metrics=Metrics())
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service, access_log=True))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                first = await client.get("/v1/key/a")
                second = await client.put("/v1/key/a", content=b"v", headers={"X-Request-Id": "x" * 129})
                kept = await client.get("/healthz", headers={"X-Request-Id": "mine"})
        finally:
            await service.aclose()
        minted = [first.headers["x-request-id"], second.headers["x-request-id"]]
        assert minted[0] != minted[1] and all(len(i.split("-")[0]) == 8 for i in minted)
        assert kept.headers["x-request-id"] == "mine"

    asyncio.run(main())


def test_5xx_answers_are_counted_under_their_route(tmp_path: Path) -> None:
    """A full disk: the refused PUT and DELETE (503 log_failed) and /readyz's 503 are counted like any answer."""

    async def main() -> None:
        disk = FailingDisk()
        service = Service(FileTransactionLog(tmp_path / "tuco.log", open_file=disk.open), metrics=Metrics())
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                assert (await client.put("/v1/key/a", content=b"1")).status_code == 201
                disk.space_left = 0
                assert (await client.put("/v1/key/b", content=b"2")).status_code == 503
                assert (await client.delete("/v1/key/a")).status_code == 503
                assert (await client.get("/readyz")).status_code == 503
                scraped = await client.get("/metrics")
        finally:
            await service.aclose()
        assert _requests_total(scraped.text) == {
            ("PUT", KEY, "201"): 1.0,
            ("PUT", KEY, "503"): 1.0,
            ("DELETE", KEY, "503"): 1.0,
            ("GET", "/readyz", "503"): 1.0,
        }

    asyncio.run(main())
