"""GET /v1/watch as Server-Sent Events, on both front ends over real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest

from tests.http.watching import FRONT_ENDS, SSE, Frame, run_served
from tuco.core.events import Event, EventType
from tuco.service import Service
from tuco.watchers import WatchSettings


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def put(client: httpx.AsyncClient, key: str, value: bytes) -> int:
    response = await client.put("/v1/key/" + quote(key, safe=""), content=value)
    assert response.status_code == 201
    return int(response.headers["x-tuco-revision"])


@FRONT_ENDS
def test_a_watch_streams_each_change_under_its_prefix_with_its_revision(front_end: str) -> None:
    """Puts and deletes under the prefix arrive as put/delete events, id = revision, JSON data; others are left out."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await put(client, "app/old", b"before")
        async with client.stream("GET", "/v1/watch", params={"prefix": "app/"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            sse = SSE(response)
            opening = await sse.frame()
            assert opening is not None and opening.retry == 1000
            await put(client, "app/a", b"\x00\xffone")
            await put(client, "other", b"x")
            await put(client, "app/a", b"two")
            assert (await client.delete("/v1/key/app%2Fa")).status_code == 200
            await put(client, "app/a", b"three")
            frames = await sse.frames(4)
        assert [(f.event, f.id) for f in frames] == [("put", "2"), ("put", "4"), ("delete", "5"), ("put", "6")]
        assert all(isinstance(f.json()["at"], int) for f in frames)  # who and when (issue 24): compared below without
        frames = [Frame(f.event, f.id, json.dumps({k: v for k, v in f.json().items() if k != "at"})) for f in frames]
        assert frames[0].json() == {
            "revision": 2,
            "key": "app/a",
            "value": b64(b"\x00\xffone"),
            "mod_revision": 2,
            "create_revision": 2,
            "version": 1,
            "by": "anonymous",
        }
        assert frames[1].json() == {
            "revision": 4,
            "key": "app/a",
            "value": b64(b"two"),
            "mod_revision": 4,
            "create_revision": 2,
            "version": 2,
            "by": "anonymous",
        }
        assert frames[2].json() == {"revision": 5, "key": "app/a", "by": "anonymous", "reason": "deleted"}
        assert frames[3].json()["create_revision"] == 6 and frames[3].json()["version"] == 1
        assert sse.comments[0] == "watching after revision 1"

    run_served(front_end, check)


@FRONT_ENDS
def test_start_revision_includes_that_revision_and_last_event_id_wins_and_excludes_it(front_end: str) -> None:
    """start_revision=R replays R and later; Last-Event-ID: X (a reconnect) wins over it and resumes after X."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(1, 6):
            await put(client, f"k{n}", b"%d" % n)
        async with client.stream("GET", "/v1/watch", params={"start_revision": "2"}) as response:
            frames = await SSE(response).frames(4)
        assert [f.id for f in frames] == ["2", "3", "4", "5"]
        async with client.stream(
            "GET", "/v1/watch", params={"start_revision": "1"}, headers={"Last-Event-ID": "3"}
        ) as response:
            frames = await SSE(response).frames(2)
        assert [(f.id, f.json()["key"]) for f in frames] == [("4", "k4"), ("5", "k5")]

    run_served(front_end, check)


@FRONT_ENDS
def test_a_key_watch_sees_only_that_key(front_end: str) -> None:
    """key=K follows exactly K: K's longer siblings are not K."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        async with client.stream("GET", "/v1/watch", params={"key": "k"}) as response:
            sse = SSE(response)
            await sse.frame()
            await put(client, "k2", b"no")
            await put(client, "k", b"yes")
            frames = await sse.frames(1)
        assert [(f.id, f.json()["key"], f.json()["value"]) for f in frames] == [("2", "k", b64(b"yes"))]

    run_served(front_end, check)


@FRONT_ENDS
def test_a_start_older_than_the_history_is_410_with_the_oldest_revision(front_end: str) -> None:
    """Memory log: once revision 1 dropped out of History, start_revision=1 is 410 history_compacted."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(20):
            await put(client, f"key{n}", b"v" * 10)
        oldest = service.store.history.oldest_revision
        assert oldest > 0
        for method in ("GET", "HEAD"):
            response = await client.request(method, "/v1/watch", params={"start_revision": "1"})
            assert response.status_code == 410
            if method == "GET":
                assert response.json() == {
                    "error": "history_compacted",
                    "message": f"that revision is no longer retained; the oldest available is {oldest}: "
                    f"ask for revision {oldest} or later (start_revision={oldest} for a watch), or read without a "
                    "revision for the current state; more history is kept with a larger TUCO_HISTORY_MAX_BYTES",
                    "oldest_revision": oldest,
                }
        async with client.stream("GET", "/v1/watch", params={"start_revision": str(oldest + 1)}) as response:
            assert response.status_code == 200
            frames = await SSE(response).frames(20 - oldest)
        assert [int(f.id or 0) for f in frames] == list(range(oldest + 1, 21))

    run_served(front_end, check, history_bytes=3000)


@pytest.mark.parametrize(
    ("params", "headers", "message"),
    [
        ({"start_revision": "0"}, {}, "start_revision must be a revision: a whole number from 1"),
        ({"start_revision": "x"}, {}, "start_revision must be a revision: a whole number from 1"),
        ({"start_revision": "9" * 19}, {}, "start_revision must be a revision: a whole number from 1"),
        ({"prefix": "a", "key": "a"}, {}, "watch a prefix or a key, not both"),
        ({"key": ""}, {}, "key must not be empty"),
        ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID must be a revision tuco sent (a whole number)"),
    ],
)
@FRONT_ENDS
def test_bad_watch_parameters_are_400(
    front_end: str, params: dict[str, str], headers: dict[str, str], message: str
) -> None:
    """Start revisions that are not positive numbers, prefix with key, an empty key, a foreign Last-Event-ID: 400."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        response = await client.get("/v1/watch", params=params, headers=headers)
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_parameter", "message": message}

    run_served(front_end, check)


@FRONT_ENDS
def test_an_idle_watch_gets_heartbeats_and_progress_with_the_current_revision(front_end: str) -> None:
    """With nothing to send for the heartbeat interval: a comment and a progress event whose id is the revision."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await put(client, "a", b"1")
        async with client.stream("GET", "/v1/watch", params={"prefix": "b"}) as response:
            sse = SSE(response)
            await sse.frame()
            await put(client, "a", b"2")  # not ours: progress still says how far the watch has looked
            started = asyncio.get_running_loop().time()
            frame = await sse.frame(timeout=3)
            waited = asyncio.get_running_loop().time() - started
        assert frame is not None
        assert (frame.event, frame.id, frame.json()) == ("progress", "2", {"revision": 2})
        assert "heartbeat" in sse.comments
        assert 0.1 < waited < 2.0

    run_served(front_end, check, watch=WatchSettings(heartbeat_seconds=0.3))


@FRONT_ENDS
def test_a_watch_that_falls_behind_is_ended_with_where_to_resume(front_end: str) -> None:
    """A live watch more than max_lag_events behind gets a cancel event naming resume_revision, then the end."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await put(client, "k", b"0")
        async with client.stream("GET", "/v1/watch") as response:
            sse = SSE(response)
            await sse.frame()
            await asyncio.sleep(0.2)  # the watch reached the store's revision: it is live
            for n in range(2, 50):  # fifty changes in one loop turn: the watch cannot have kept up
                service.apply(Event(n, EventType.PUT, "k", b"%d" % n))
            frames = [f async for f in _until_end(sse)]
        assert frames[-1].event == "cancel"
        assert frames[-1].json() == {"reason": "slow_consumer", "resume_revision": 2}
        assert frames[-1].id == "1"
        async with client.stream("GET", "/v1/watch", params={"start_revision": "2"}) as response:
            resumed = await SSE(response).frames(48)
        assert [int(f.id or 0) for f in resumed] == list(range(2, 50))

    run_served(front_end, check, watch=WatchSettings(max_lag_events=10))


async def _until_end(sse: SSE) -> AsyncIterator[Frame]:
    """The frames after the opening one, progress left out, to the end of the stream."""
    while (frame := await sse.frame()) is not None:
        if frame.retry is None and frame.event != "progress":
            yield frame


@FRONT_ENDS
def test_watchers_over_the_cap_get_503(front_end: str) -> None:
    """With max_watchers=1 a second stream is refused with 503 too_many_watchers; closing the first frees it."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        async with client.stream("GET", "/v1/watch") as response:
            await SSE(response).frame()
            refused = await client.get("/v1/watch")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"] == "too_many_watchers"
        for _ in range(100):
            if service.watch_count == 0:
                break
            await asyncio.sleep(0.02)
        assert service.watch_count == 0
        async with client.stream("GET", "/v1/watch") as response:
            assert response.status_code == 200

    run_served(front_end, check, watch=WatchSettings(max_watchers=1))


@FRONT_ENDS
def test_ending_watches_closes_every_stream_with_a_cancel_event(front_end: str) -> None:
    """At shutdown each stream gets cancel shutting_down with its resume point and ends at once."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await put(client, "a", b"1")
        async with client.stream("GET", "/v1/watch") as response:
            sse = SSE(response)
            await sse.frame()
            service.end_watches()
            frames = [f async for f in _until_end(sse)]
        assert [(f.event, f.json()) for f in frames] == [("cancel", {"reason": "shutting_down", "resume_revision": 2})]

    run_served(front_end, check)


@FRONT_ENDS
def test_head_says_whether_a_watch_would_stream_without_opening_one(front_end: str) -> None:
    """HEAD /v1/watch answers 200 with the stream's headers and no body, and opens no watch."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        response = await client.head("/v1/watch", params={"prefix": "a"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.content == b""
        assert service.watch_count == 0
        assert (await client.post("/v1/watch")).status_code == 405

    run_served(front_end, check)


@FRONT_ENDS
def test_an_allowed_origin_gets_cors_headers_and_others_do_not(front_end: str) -> None:
    """TUCO_CORS_ALLOW_ORIGINS: the watch answers Access-Control-Allow-Origin for a listed Origin only."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        allowed = await client.head("/v1/watch", headers={"Origin": "http://app.test:3000"})
        assert allowed.headers["access-control-allow-origin"] == "http://app.test:3000"
        assert allowed.headers["vary"] == "Origin"
        other = await client.head("/v1/watch", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in other.headers

    run_served(front_end, check, watch=WatchSettings(allow_origins=frozenset({"http://app.test:3000"})))


@FRONT_ENDS
def test_keys_with_newlines_cannot_split_or_forge_frames(front_end: str) -> None:
    """A key holding CR, LF and "event:" text stays inside one JSON data line: one frame, the exact key."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        nasty = "x\r\n\r\nevent: delete\ndata: {}\n\nid: 999\r"
        async with client.stream("GET", "/v1/watch", params={"prefix": "x"}) as response:
            sse = SSE(response)
            await sse.frame()
            await put(client, nasty, b"\n\n")
            await put(client, "x2", b"after")
            frames = await sse.frames(2)
        assert [(f.event, f.id) for f in frames] == [("put", "1"), ("put", "2")]
        assert (frames[0].json()["key"], frames[0].json()["value"]) == (nasty, b64(b"\n\n"))

    run_served(front_end, check)


@FRONT_ENDS
def test_a_resume_point_ahead_of_the_store_is_409_revision_ahead_and_opens_no_watch(front_end: str) -> None:
    """Last-Event-ID or start_revision past the store (restored from a backup) is refused; nothing claims it."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(1, 6):
            await put(client, f"k{n}", b"%d" % n)
        for headers, params, requested in (
            ({"Last-Event-ID": "25"}, {}, 25),
            ({}, {"start_revision": "1000"}, 999),
            ({"Last-Event-ID": "6"}, {"start_revision": "1"}, 6),  # Last-Event-ID wins, and 6 is not reached
        ):
            for method in ("GET", "HEAD"):
                refused = await client.request(method, "/v1/watch", params=params, headers=headers)
                assert refused.status_code == 409
                if method == "GET":
                    assert refused.json() == {
                        "error": "revision_ahead",
                        "message": f"revision {requested} is ahead of this store, which is at revision 5 "
                        "(restored from an older state?); re-read the keys and watch again from now",
                        "revision": 5,
                        "requested": requested,
                    }
        assert service.watch_count == 0
        # The store's own revision, and the next one, are resume points it has reached.
        async with client.stream("GET", "/v1/watch", params={"start_revision": "6"}) as response:
            assert response.status_code == 200
            sse = SSE(response)
            await sse.frame()
            await put(client, "k6", b"6")
            assert [(f.event, f.id) for f in await sse.frames(1)] == [("put", "6")]
        async with client.stream("GET", "/v1/watch", headers={"Last-Event-ID": "6"}) as response:
            assert response.status_code == 200
            sse = SSE(response)
            await sse.frame()
            assert sse.comments == ["watching after revision 6"]

    run_served(front_end, check)


@FRONT_ENDS
def test_an_idle_watch_never_claims_a_revision_the_store_has_not_reached(front_end: str) -> None:
    """Progress frames of an idle watch carry the store's revision, never the one a client wished for."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        for n in range(1, 4):
            await put(client, f"k{n}", b"x")
        async with client.stream("GET", "/v1/watch", params={"start_revision": "4"}) as response:
            assert response.status_code == 200
            sse = SSE(response)
            await sse.frame()
            frames = await sse.frames(2, skip=())
        assert [(f.event, f.id, f.json()) for f in frames] == [("progress", "3", {"revision": 3})] * 2
        assert sse.comments[0] == "watching after revision 3"

    run_served(front_end, check, watch=WatchSettings(heartbeat_seconds=0.05))
