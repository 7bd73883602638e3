"""GET /v1/snapshot in process, through both front ends: the stream is the state at its revision, and the caps hold."""

from __future__ import annotations

import httpx
import pytest

from tests.http.test_ttl import FRONTS, Clock, serve
from tuco.core.snapshot import KeyRecord, SnapshotDecoder
from tuco.service import Service


@pytest.mark.parametrize("front", FRONTS)
def test_the_snapshot_streams_every_key_with_its_revisions(front: str) -> None:
    """Keys written, one rewritten and one deleted: the snapshot holds exactly the live ones, revisions and all."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        for n in range(300):
            assert (await client.put(f"/v1/key/k{n:03d}", content=bytes([n % 256]) * n)).status_code == 201
        assert (await client.put("/v1/key/k001", content=b"again")).status_code == 201
        assert (await client.delete("/v1/key/k002")).status_code == 200
        answer = await client.get("/v1/snapshot")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/vnd.tuco.snapshot"
        assert answer.headers["x-tuco-revision"] == "302"
        decoder = SnapshotDecoder()
        items = decoder.feed(answer.content)
        summary = decoder.finish()
        assert (summary.revision, summary.keys, summary.leases, summary.tokens) == (302, 299, 0, 0)
        keys = {item.key: item for item in items if isinstance(item, KeyRecord)}
        assert keys["k001"] == KeyRecord("k001", b"again", 2, 301, 2)
        assert keys["k299"] == KeyRecord("k299", bytes([299 % 256]) * 299, 300, 300, 1)
        assert "k002" not in keys
        assert len(service.snapshots) == 0  # the stream ended, and with it the snapshot

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_head_says_a_snapshot_can_be_taken_and_holds_none_open(front: str) -> None:
    """HEAD answers 200 with the revision and no body, and leaves no snapshot running."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        assert (await client.put("/v1/key/a", content=b"1")).status_code == 201
        answer = await client.head("/v1/snapshot")
        assert answer.status_code == 200
        assert answer.headers["x-tuco-revision"] == "1"
        assert answer.content == b""
        assert len(service.snapshots) == 0

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_a_third_snapshot_at_once_is_503_snapshot_unavailable(front: str) -> None:
    """With two snapshots running, a third is refused with 503 and the error's code; ending one makes room."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        first = service.snapshot()
        second = service.snapshot()
        answer = await client.get("/v1/snapshot")
        assert answer.status_code == 503
        assert answer.json()["error"] == "snapshot_unavailable"
        assert answer.json()["message"] == "2 snapshots are being taken already; try again when one ends"
        await first.aclose()
        assert (await client.get("/v1/snapshot")).status_code == 200
        second.close()
        assert len(service.snapshots) == 0

    serve(front, check)
