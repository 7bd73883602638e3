"""GET /v1/key/{k}?wait_revision=N&timeout=T: long polls on both front ends over real loopback sockets."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.http.watching import FRONT_ENDS, run_served
from tuco.service import Service


@FRONT_ENDS
def test_a_long_poll_answers_at_the_change(front_end: str) -> None:
    """A poll for revision N answers as soon as the key is written at N, with the new value and ETag."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await client.put("/v1/key/k", content=b"old")
        await client.put("/v1/key/other", content=b"x")
        poll = asyncio.ensure_future(client.get("/v1/key/k", params={"wait_revision": "3", "timeout": "10s"}))
        await asyncio.sleep(0.3)
        assert not poll.done()
        await client.put("/v1/key/other", content=b"not k")  # revision 3, another key: still waiting
        await asyncio.sleep(0.2)
        assert not poll.done()
        await client.put("/v1/key/k", content=b"new")  # revision 4 >= 3
        response = await poll  # pending until the write, answered by it (changed, at its revision), not the timeout
        assert (response.status_code, response.content) == (200, b"new")
        assert (response.headers["etag"], response.headers["x-tuco-wait"]) == ('"4"', "changed")

    run_served(front_end, check)


@FRONT_ENDS
def test_a_long_poll_answers_the_current_state_at_the_timeout(front_end: str) -> None:
    """Nothing changes: at the timeout the answer is the key as it is, marked X-Tuco-Wait: timeout."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await client.put("/v1/key/k", content=b"same")
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.get("/v1/key/k", params={"wait_revision": "2", "timeout": "400ms"})
        waited = loop.time() - started  # on the loop's clock, which the server's timer runs on too
        assert (response.status_code, response.content, response.headers["etag"]) == (200, b"same", '"1"')
        assert response.headers["x-tuco-wait"] == "timeout"
        assert waited >= 0.4  # not answered before its timeout (no upper bound: a loaded machine is slower)
        absent = await client.get("/v1/key/none", params={"wait_revision": "1", "timeout": "0.2"})
        assert (absent.status_code, absent.headers["x-tuco-wait"], absent.json()["error"]) == (
            404,
            "timeout",
            "no_such_key",
        )

    run_served(front_end, check)


@FRONT_ENDS
def test_a_long_poll_answers_a_delete_with_404_and_a_reached_revision_at_once(front_end: str) -> None:
    """A DELETE at N answers 404 changed; a revision already reached answers at once; so does a past delete."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await client.put("/v1/key/k", content=b"v")
        now = await client.get("/v1/key/k", params={"wait_revision": "1", "timeout": "10s"})
        assert (now.status_code, now.headers["x-tuco-wait"]) == (200, "changed")
        poll = asyncio.ensure_future(client.get("/v1/key/k", params={"wait_revision": "2", "timeout": "10s"}))
        await asyncio.sleep(0.2)
        await client.delete("/v1/key/k")
        gone = await poll
        assert (gone.status_code, gone.headers["x-tuco-wait"], gone.headers["x-tuco-revision"]) == (
            404,
            "changed",
            "2",
        )
        again = await client.get("/v1/key/k", params={"wait_revision": "2", "timeout": "10s"})
        assert (again.status_code, again.headers["x-tuco-wait"]) == (404, "changed")

    run_served(front_end, check)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"wait_revision": "0"}, "wait_revision must be a revision: a whole number from 1"),
        ({"wait_revision": "-1"}, "wait_revision must be a revision: a whole number from 1"),
        ({"wait_revision": ""}, "wait_revision must be a revision: a whole number from 1"),
        ({"wait_revision": "1", "timeout": "soon"}, "timeout must be a duration such as 30s, 500ms or 2.5 (seconds)"),
        ({"wait_revision": "1", "timeout": "1.s"}, "timeout must be a duration such as 30s, 500ms or 2.5 (seconds)"),
        ({"wait_revision": "1", "timeout": "-1s"}, "timeout must be a duration such as 30s, 500ms or 2.5 (seconds)"),
        ({"wait_revision": "1", "timeout": "301s"}, "timeout must be at most 300s"),
        ({"wait_revision": "1", "timeout": "300001ms"}, "timeout must be at most 300s"),
    ],
)
@FRONT_ENDS
def test_bad_long_poll_parameters_are_400(front_end: str, params: dict[str, str], message: str) -> None:
    """A wait_revision that is not a positive number, or a timeout that is not a duration up to 300 s: 400."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        response = await client.get("/v1/key/k", params=params)
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_parameter", "message": message}

    run_served(front_end, check)


@FRONT_ENDS
def test_shutdown_answers_waiting_long_polls_at_once(front_end: str) -> None:
    """Ending watches (shutdown) answers a pending long poll at once with the current state, marked timeout."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await client.put("/v1/key/k", content=b"v")
        poll = asyncio.ensure_future(client.get("/v1/key/k", params={"wait_revision": "2", "timeout": "60s"}))
        await asyncio.sleep(0.2)
        service.end_watches()
        response = await asyncio.wait_for(poll, 2)
        assert (response.status_code, response.content, response.headers["x-tuco-wait"]) == (200, b"v", "timeout")

    run_served(front_end, check)


@FRONT_ENDS
def test_a_long_poll_for_a_revision_past_the_store_is_409_revision_ahead(front_end: str) -> None:
    """wait_revision - 1 past the store (restored from a backup) is refused at once; the next revision is waited for."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(1, 6):
            assert (await client.put(f"/v1/key/k{n}", content=b"v")).status_code == 201
        refused = await client.get("/v1/key/k1", params={"wait_revision": "27", "timeout": "30s"})
        assert refused.status_code == 409
        assert refused.json()["error"] == "revision_ahead"
        assert (refused.json()["revision"], refused.json()["requested"]) == (5, 26)
        waited = await client.get("/v1/key/k1", params={"wait_revision": "6", "timeout": "100ms"})
        assert (waited.status_code, waited.headers["x-tuco-wait"]) == (200, "timeout")

    run_served(front_end, check)
