"""Whatever waits is authorized again when it answers: long polls and watch streams outlive no credential."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest

from tests.http.secured import FRONT_ENDS, run_secured, secured_service, token_for
from tests.http.test_auth import ADMIN
from tests.http.watching import SSE
from tuco.core.snapshot import SnapshotDecoder
from tuco.errors import SnapshotFormatError
from tuco.service import Service
from tuco.watchers import WatchSettings


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


async def _waiting(
    client: httpx.AsyncClient, headers: dict[str, str], service: Service
) -> asyncio.Future[httpx.Response]:
    """A long poll on app/k for the next revision, started and seen waiting by the server."""
    revision = service.revision + 1
    poll = asyncio.ensure_future(
        client.get("/v1/key/app%2Fk", params={"wait_revision": str(revision), "timeout": "20s"}, headers=headers)
    )
    deadline = asyncio.get_running_loop().time() + 10
    while service.hub is None or not service.hub.key_waiters:
        assert asyncio.get_running_loop().time() < deadline, "the long poll never waited"
        assert not poll.done(), poll.result().text
        await asyncio.sleep(0.01)
    return poll


def _unauthorized(answer: httpx.Response) -> tuple[int, str, str]:
    assert answer.status_code == 401, (answer.status_code, answer.content)
    return answer.status_code, answer.json()["error"], answer.headers["www-authenticate"]


_INVALID = (401, "unauthorized", 'Bearer realm="tuco", error="invalid_token"')


@FRONT_ENDS
def test_a_long_poll_whose_token_is_revoked_while_it_waits_answers_401(front_end: str) -> None:
    """Revoked while waiting, a long poll answers 401 at the change (as a plain GET then would), never the value."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/app%2Fk", content=b"before", headers=ADMIN)).status_code == 201
        created = await client.post(
            "/v1/tokens", json={"grants": [{"prefix": "app/", "permission": "read"}]}, headers=ADMIN
        )
        reader = {"Authorization": f"Bearer {created.json()['token']}"}
        poll = await _waiting(client, reader, service)
        assert (await client.delete(f"/v1/tokens/{created.json()['id']}", headers=ADMIN)).status_code == 204
        assert (await client.put("/v1/key/app%2Fk", content=b"after revocation", headers=ADMIN)).status_code == 201
        answer = await poll
        assert _unauthorized(answer) == _INVALID
        assert b"after revocation" not in answer.content
        plain = await client.get("/v1/key/app%2Fk", headers=reader)
        assert _unauthorized(plain) == _INVALID

    run_secured(front_end, check)


@FRONT_ENDS
def test_a_long_poll_whose_token_expires_while_it_waits_answers_401(front_end: str) -> None:
    """A token that expires while its long poll waits gets 401 at the change after the expiry, never the value."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/app%2Fk", content=b"before", headers=ADMIN)).status_code == 201
        ends = int(time.time()) + 2
        reader = await token_for(client, ("app/", "read"), expires_at=_rfc3339(ends))
        poll = await _waiting(client, reader, service)
        await asyncio.sleep(max(0.0, ends - time.time() + 0.05))  # the token has expired now
        assert not poll.done()
        assert (await client.put("/v1/key/app%2Fk", content=b"after expiry", headers=ADMIN)).status_code == 201
        answer = await poll
        assert _unauthorized(answer) == _INVALID
        assert b"after expiry" not in answer.content

    run_secured(front_end, check)


@FRONT_ENDS
def test_a_long_poll_revoked_while_waiting_answers_401_at_its_timeout_too(front_end: str) -> None:
    """Nothing changes: at the timeout a revoked token's long poll is 401, not the key as it is."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/app%2Fk", content=b"same", headers=ADMIN)).status_code == 201
        created = await client.post(
            "/v1/tokens", json={"grants": [{"prefix": "app/", "permission": "read"}]}, headers=ADMIN
        )
        reader = {"Authorization": f"Bearer {created.json()['token']}"}
        after = str(service.revision + 1)  # the next revision (a later one is 409 revision_ahead): not this key's
        poll = asyncio.ensure_future(
            client.get("/v1/key/app%2Fk", params={"wait_revision": after, "timeout": "1s"}, headers=reader)
        )
        await asyncio.sleep(0.2)
        assert (await client.delete(f"/v1/tokens/{created.json()['id']}", headers=ADMIN)).status_code == 204
        assert _unauthorized(await poll) == _INVALID

    run_secured(front_end, check)


@FRONT_ENDS
def test_a_long_poll_by_a_valid_token_still_answers_the_change(front_end: str) -> None:
    """The check at the answer lets a valid token through: the changed value, X-Tuco-Wait: changed."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/app%2Fk", content=b"before", headers=ADMIN)).status_code == 201
        reader = await token_for(client, ("app/", "read"))
        poll = await _waiting(client, reader, service)
        assert (await client.put("/v1/key/app%2Fk", content=b"new", headers=ADMIN)).status_code == 201
        answer = await poll
        assert (answer.status_code, answer.content, answer.headers["x-tuco-wait"]) == (200, b"new", "changed")

    run_secured(front_end, check)


@FRONT_ENDS
def test_a_watch_ends_at_its_first_frame_after_its_token_expires(front_end: str) -> None:
    """A watch stream opened with a token that then expires delivers no change made after the expiry."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        ends = int(time.time()) + 2
        reader = await token_for(client, ("app/", "read"), expires_at=_rfc3339(ends))
        async with client.stream("GET", "/v1/watch?prefix=app%2F", headers=reader) as response:
            assert response.status_code == 200
            sse = SSE(response)
            assert (await client.put("/v1/key/app%2Fa", content=b"before", headers=ADMIN)).status_code == 201
            seen = await sse.frames(1)
            assert [frame.json()["key"] for frame in seen] == ["app/a"]
            await asyncio.sleep(max(0.0, ends - time.time() + 0.05))
            late = await client.put("/v1/key/app%2Fb", content=b"written after the expiry", headers=ADMIN)
            assert late.status_code == 201
            assert await sse.frames(1, timeout=10) == []  # the stream ended instead
            assert b"app/b" not in sse.raw

    run_secured(front_end, check, secured_service(watch=WatchSettings(heartbeat_seconds=0.5)))


@FRONT_ENDS
def test_a_snapshot_stream_ends_once_its_admin_token_is_revoked(front_end: str) -> None:
    """A snapshot streaming to an admin token revoked mid-stream sends nothing more: no trailer, refused whole."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        created = await client.post(
            "/v1/tokens", json={"grants": [{"prefix": "", "permission": "admin"}]}, headers=ADMIN
        )
        assert created.status_code == 201
        admin = {"Authorization": f"Bearer {created.json()['token']}"}
        value = base64.b64encode(b"v" * 1024).decode()
        for n in range(0, 4000, 1000):  # a transaction a thousand keys: 4 requests, not 4,000 token checks
            puts = [{"put": {"key": f"k{m:05d}", "value": value}} for m in range(n, n + 1000)]
            written = await client.post("/v1/txn", json={"success": puts}, headers=ADMIN)
            assert (written.status_code, written.json().get("succeeded")) == (200, True), written.text[:300]
        received = b""
        async with client.stream("GET", "/v1/snapshot", headers=admin) as response:
            assert response.status_code == 200
            chunks = response.aiter_raw()
            received += await chunks.__anext__()
            revoked = await client.delete(f"/v1/tokens/{created.json()['id']}", headers=ADMIN)
            assert revoked.status_code == 204
            async for chunk in chunks:
                received += chunk
        assert 0 < len(received) < 4000 * 1024  # the snapshot stopped: far less than its 4,000 values
        decoder = SnapshotDecoder()
        decoder.feed(received)
        with pytest.raises(SnapshotFormatError):
            decoder.finish()

    run_secured(front_end, check, secured_service(watch=WatchSettings(heartbeat_seconds=0.5)))
