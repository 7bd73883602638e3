"""Refused requests carry a stable code and tuco's own words; OS and driver text goes to the log only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
import structlog

from tests import build
from tuco import __version__
from tuco.errors import LogUnavailableError
from tuco.http.asgi import ASGIApp
from tuco.log.file import FileTransactionLog
from tuco.service import Service
from tuco.testing import FailingDisk, MemoryLog

FAILED = "the transaction log failed and takes no more writes; see the server's log"


@pytest.fixture
def failing_disk() -> FailingDisk:
    """The shipped disk that fills up when told to."""
    return FailingDisk()


def test_a_full_disk_is_answered_in_tuco_words_and_logged_once_in_detail(
    tmp_path: Path, failing_disk: FailingDisk
) -> None:
    """ENOSPC on a real file: PUT, DELETE and /readyz say tuco's fixed words; path and errno text are logged once."""
    path = tmp_path / "tuco.log"

    async def main() -> None:
        service = Service(FileTransactionLog(path, open_file=failing_disk.open))
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                assert (await client.put("/v1/key/kept", content=b"safe")).status_code == 201
                failing_disk.space_left = 0
                with structlog.testing.capture_logs() as logs:
                    put = await client.put("/v1/key/lost", content=b"never")
                    delete = await client.delete("/v1/key/kept")
                    ready = await client.get("/readyz")
        finally:
            await service.aclose()
        assert (put.status_code, put.json()) == (503, {"error": "log_failed", "message": f"not stored: {FAILED}"})
        assert (delete.status_code, delete.json()) == (
            503,
            {"error": "log_failed", "message": f"not deleted: {FAILED}"},
        )
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "phase": "serving",
            "version": __version__,
            "build": build.EXPECTED,
            "log": {"backend": "file", "sync": "always", "last_sequence": 1},
            "error": "log_failed",
            "message": FAILED,
            "store": {
                "bytes": len("kept") + len(b"safe") + 240,
                "max_bytes": 1 << 30,
                "keys": 1,
                "max_keys": 10_000_000,
                "full": False,
            },
        }
        for response in (put, delete, ready):
            assert str(tmp_path) not in response.text and "No space" not in response.text
        refused = [entry for entry in logs if entry["event"] == "request_refused"]
        assert len(refused) == 1, refused
        assert refused[0]["error"] == "log_failed"
        assert str(path) in refused[0]["detail"] and "No space left on device" in refused[0]["detail"]

    asyncio.run(main())


class _RemoteLog(MemoryLog):
    """A memory log that describes itself like a database-backed one, secrets and all."""

    def describe(self) -> Mapping[str, object]:
        return {
            "backend": "postgres",
            "last_sequence": 7,
            "lag_events": 2,
            "lag_seconds": 0.25,
            "connected": True,
            "database": "tuco@db.internal:5432/prod",
            "host": "db.internal",
            "user": "tuco",
            "last_error": "connection refused by db.internal",
        }


def test_readyz_shows_only_whitelisted_log_fields() -> None:
    """/readyz renders backend and counters only: no database host, user, name or driver text."""

    async def main() -> None:
        service = Service(_RemoteLog())
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                ready = await client.get("/readyz")
        finally:
            await service.aclose()
        assert (ready.status_code, ready.json()) == (
            200,
            {
                "ready": True,
                "phase": "serving",
                "version": __version__,
                "build": build.EXPECTED,
                "log": {
                    "backend": "postgres",
                    "last_sequence": 7,
                    "lag_events": 2,
                    "lag_seconds": 0.25,
                    "connected": True,
                },
                "store": {"bytes": 0, "max_bytes": 1 << 30, "keys": 0, "max_keys": 10_000_000, "full": False},
            },
        )
        assert "db.internal" not in ready.text

    asyncio.run(main())


class _UnreachableLog(MemoryLog):
    """A memory log whose database has gone away, with a driver message naming the host."""

    async def catch_up(self) -> None:
        raise LogUnavailableError("cannot reach db.internal:5432 as tuco: connection refused")


def test_a_consistent_read_without_the_database_says_tuco_words() -> None:
    """?consistent=true with the database gone is 503 log_unavailable with a fixed message, not the driver's."""

    async def main() -> None:
        service = Service(_UnreachableLog())
        await service.start()
        transport = httpx.ASGITransport(app=ASGIApp(service))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                got = await client.get("/v1/key/k", params={"consistent": "true"})
        finally:
            await service.aclose()
        assert got.status_code == 503
        assert json.loads(got.content) == {
            "error": "log_unavailable",
            "message": "no consistent read: cannot reach the log for a consistent read; see the server's log",
        }

    asyncio.run(main())
