"""PUT ?ttl=: keys that expire, over both front ends (ASGI in process, the native server over a socket).

The memory log is handed a clock the test moves, so deadlines pass without sleeping; the
expirer, which polls every 50 ms of real time, then writes the DELETE through the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tuco.core.events import EventType
from tuco.http.api import KeyValueAPI
from tuco.http.asgi import ASGIApp
from tuco.http.server import ServerSettings, start_server
from tuco.service import Limits, Service
from tuco.testing import MemoryLog

FRONTS = ["asgi", "native"]
START = 1_800_000_000_000  # Unix ms: any fixed moment
Check = Callable[[httpx.AsyncClient, Service, "Clock"], Awaitable[None]]


class Clock:
    """A Unix-millisecond clock that moves only when told to."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def serve(front: str, check: Check, *, limits: Limits | None = None) -> None:
    """Run ``check`` against a started service on a memory log with a test clock, through ``front``."""

    async def main() -> None:
        clock = Clock()
        service = Service(MemoryLog(clock=clock), limits)
        await service.start()
        try:
            if front == "asgi":
                transport = httpx.ASGITransport(app=ASGIApp(service))
                async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                    await check(client, service, clock)
                return
            sizes = service.limits  # as runtime.py sets them from the settings
            settings = ServerSettings(max_body_bytes=sizes.max_value_bytes, max_txn_body_bytes=sizes.txn_body_bytes)
            server = await start_server(KeyValueAPI(service).handle, host="127.0.0.1", port=0, settings=settings)
            try:
                host, port = server.addresses[0]
                async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                    await check(client, service, clock)
            finally:
                await server.aclose(grace=1.0)
        finally:
            await service.aclose()

    asyncio.run(main())


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


async def expirer_rounds(service: Service, rounds: int = 2) -> None:
    """Wait until the expirer finished ``rounds`` more rounds: one of them began after now, so it saw the clock.

    What a "nothing was deleted" check waits for, rather than a fixed sleep that a busy machine may outlast.
    """
    seen = service.expiry_rounds
    await until(lambda: service.expiry_rounds >= seen + rounds, timeout=30.0)


def events_of(service: Service) -> list[tuple[int, EventType, str]]:
    log = service.log
    assert isinstance(log, MemoryLog)
    return [(event.sequence, event.type, event.key) for event in log.events]


@pytest.mark.parametrize("front", FRONTS)
def test_a_put_with_a_ttl_answers_its_deadline_and_get_head_and_listing_show_it(front: str) -> None:
    """PUT ?ttl=30s answers 201 with X-Tuco-Expires-At = now + 30 s; GET, HEAD and the listing carry it too."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        put = await client.put("/v1/key/session", params={"ttl": "30s"}, content=b"token")
        assert (put.status_code, put.headers["etag"], put.headers["x-tuco-revision"]) == (201, '"1"', "1")
        assert put.headers["x-tuco-expires-at"] == str(START + 30_000)
        await client.put("/v1/key/plain", content=b"p")
        got = await client.get("/v1/key/session")
        assert (got.status_code, got.content, got.headers["etag"]) == (200, b"token", '"1"')
        assert (got.headers["x-tuco-expires-at"], got.headers["x-tuco-revision"]) == (str(START + 30_000), "2")
        head = await client.head("/v1/key/session")
        assert (head.status_code, head.content, head.headers["x-tuco-expires-at"]) == (200, b"", str(START + 30_000))
        plain = await client.get("/v1/key/plain")
        assert (plain.status_code, "x-tuco-expires-at" in plain.headers) == (200, False)
        listing = await client.get("/v1/keys")
        assert listing.json()["items"] == [
            {"key": "plain", "value": "cA==", "create_revision": 2, "mod_revision": 2, "version": 1},
            {
                "key": "session",
                "value": "dG9rZW4=",
                "create_revision": 1,
                "mod_revision": 1,
                "version": 1,
                "expires_at": START + 30_000,
            },
        ]
        keys_only = await client.get("/v1/keys", params={"keys_only": "true"})
        assert keys_only.json()["items"][1] == {
            "key": "session",
            "create_revision": 1,
            "mod_revision": 1,
            "version": 1,
            "expires_at": START + 30_000,
        }

    serve(front, check)


@pytest.mark.parametrize(
    ("ttl", "ms"),
    [("500ms", 500), ("2", 2000), ("1.5s", 1500), ("5m", 300_000), ("1h", 3_600_000), ("2d", 172_800_000)],
)
def test_ttl_units(ttl: str, ms: int) -> None:
    """A ttl is ms, s, m, h or d; a bare number is seconds; fractions are allowed down to the millisecond."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        put = await client.put("/v1/key/k", params={"ttl": ttl}, content=b"v")
        assert (put.status_code, put.headers["x-tuco-expires-at"]) == (201, str(START + ms))

    serve("asgi", check)


@pytest.mark.parametrize("front", FRONTS)
def test_an_expired_key_is_never_returned_and_its_delete_is_logged_once(front: str) -> None:
    """Past the deadline GET, HEAD and listings answer as if absent at once; the expirer logs exactly one DELETE."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        await client.put("/v1/key/k", params={"ttl": "10s"}, content=b"v")
        await client.put("/v1/key/stays", content=b"s")
        clock.advance(9_999)
        assert (await client.get("/v1/key/k")).status_code == 200
        clock.advance(1)
        # No await between the clock passing the deadline and the read: the store hides it by itself.
        with pytest.raises(KeyError):
            service.get("k")
        await until(lambda: (3, EventType.DELETE, "k") in events_of(service))
        missing = await client.get("/v1/key/k")
        assert (missing.status_code, missing.json()["error"]) == (404, "no_such_key")
        assert (await client.head("/v1/key/k")).status_code == 404
        assert [item["key"] for item in (await client.get("/v1/keys")).json()["items"]] == ["stays"]
        await expirer_rounds(service, 4)  # several more expirer rounds: still one DELETE
        assert events_of(service) == [(1, EventType.PUT, "k"), (2, EventType.PUT, "stays"), (3, EventType.DELETE, "k")]
        assert service.expired_keys == 1

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_a_listing_hides_an_expired_key_before_its_delete_is_logged(front: str) -> None:
    """The listing filters by the log's clock, not by what the expirer has written yet."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        await client.put("/v1/key/a", params={"ttl": "1s"}, content=b"v")
        await client.put("/v1/key/b", content=b"w")
        await service.expirer.aclose()  # hold the expirer so only the masking can hide the key
        clock.advance(1_000)
        listing = await client.get("/v1/keys")
        assert [item["key"] for item in listing.json()["items"]] == ["b"]
        assert (await client.get("/v1/key/a")).status_code == 404
        assert [e for e in events_of(service) if e[1] is EventType.DELETE] == []

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_a_put_without_ttl_makes_the_key_permanent_again(front: str) -> None:
    """A PUT without ?ttl= of a key that had a deadline clears it (etcd's semantics): it no longer expires."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        await client.put("/v1/key/k", params={"ttl": "1s"}, content=b"1")
        again = await client.put("/v1/key/k", content=b"2")
        assert (again.status_code, "x-tuco-expires-at" in again.headers) == (201, False)
        clock.advance(5_000)
        await expirer_rounds(service)
        got = await client.get("/v1/key/k")
        assert (got.status_code, got.content, got.headers["etag"], "x-tuco-expires-at" in got.headers) == (
            200,
            b"2",
            '"2"',
            False,
        )
        assert [e[1] for e in events_of(service)] == [EventType.PUT, EventType.PUT]

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_a_key_rewritten_with_a_new_ttl_expires_at_the_new_deadline_only(front: str) -> None:
    """Rewriting a key moves its deadline: the old one passes without a DELETE, the new one brings one."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        await client.put("/v1/key/k", params={"ttl": "1s"}, content=b"1")
        clock.advance(500)
        moved = await client.put("/v1/key/k", params={"ttl": "1s"}, content=b"2")
        assert moved.headers["x-tuco-expires-at"] == str(START + 1_500)
        clock.advance(600)  # past the first deadline
        await expirer_rounds(service)
        assert (await client.get("/v1/key/k")).content == b"2"
        clock.advance(400)
        await until(lambda: len(events_of(service)) == 3)
        assert events_of(service)[2] == (3, EventType.DELETE, "k")

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_a_create_only_put_with_a_ttl(front: str) -> None:
    """If-None-Match: * works with ?ttl=: the first PUT creates the key with a deadline, the second is 412."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        first = await client.put("/v1/key/lock", params={"ttl": "5s"}, content=b"me", headers={"If-None-Match": "*"})
        assert (first.status_code, first.headers["x-tuco-expires-at"]) == (201, str(START + 5_000))
        second = await client.put("/v1/key/lock", params={"ttl": "5s"}, content=b"you", headers={"If-None-Match": "*"})
        assert (second.status_code, second.headers["etag"], second.json()["error"]) == (
            412,
            '"1"',
            "precondition_failed",
        )
        clock.advance(5_000)
        await until(lambda: "lock" not in service.store)
        third = await client.put("/v1/key/lock", params={"ttl": "5s"}, content=b"you", headers={"If-None-Match": "*"})
        assert (third.status_code, third.headers["etag"]) == (201, '"3"')

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ttl=0", "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),
        ("ttl=0.4ms", "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),
        ("ttl=366d", "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),
        ("ttl=-5", "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"),
        ("ttl=abc", "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"),
        ("ttl=", "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"),
        ("ttl=1e3", "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"),
        ("ttl=" + "9" * 40, "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"),
        ("ttl=5s&lease=1", "send ttl or lease, not both: a key expires at one deadline"),
        ("lease=abc", "lease must be a lease id, as granted"),
        ("lease=0", "lease must be a lease id, as granted"),
        ("lease=99999999999999999999", "lease must be a lease id, as granted"),
    ],
)
def test_bad_ttl_and_lease_parameters_are_400_and_write_nothing(front: str, query: str, message: str) -> None:
    """Zero, negative, garbage or over-the-cap ttls, a garbage lease, or both: 400 invalid_parameter."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        response = await client.put(f"/v1/key/k?{query}", content=b"v")
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_parameter", "message": message}
        assert "k" not in service.store
        assert service.revision == 0

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_a_put_with_other_query_parameters_is_an_ordinary_put(front: str) -> None:
    """Parameters PUT does not know are ignored, as before: the key is stored without a deadline."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        put = await client.put("/v1/key/k?x=1", content=b"v")
        assert (put.status_code, "x-tuco-expires-at" in put.headers) == (201, False)
        assert service.store.key_expiry("k") is None

    serve(front, check)


def test_the_ttl_cap_is_configurable() -> None:
    """TUCO_MAX_TTL_SECONDS (Limits.max_ttl_ms) bounds ?ttl=: at the cap 201, one ms over it 400."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        assert (await client.put("/v1/key/k", params={"ttl": "60s"}, content=b"v")).status_code == 201
        over = await client.put("/v1/key/k", params={"ttl": "60001ms"}, content=b"v")
        assert (over.status_code, over.json()["message"]) == (
            400,
            "ttl must be from 1 ms to 60 s (TUCO_MAX_TTL_SECONDS)",
        )

    serve("asgi", check, limits=Limits(max_ttl_ms=60_000))


def test_thousands_of_keys_expiring_at_once_are_deleted_in_one_group_committed_batch() -> None:
    """5,000 keys with one deadline: the expirer hands the log all 5,000 DELETEs as one batch, not 5,000 commits."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        await asyncio.gather(*(service.put_expiring(f"k{n}", b"v", None, ttl_ms=1_000) for n in range(5_000)))
        batches_before = service.log.statistics().batch_sizes.count
        clock.advance(1_000)
        await until(lambda: len(service.store) == 0)
        assert service.log.statistics().batch_sizes.count - batches_before == 1
        kinds = [e[1] for e in events_of(service)]
        assert (kinds.count(EventType.PUT), kinds.count(EventType.DELETE)) == (5_000, 5_000)
        assert (await client.get("/v1/keys")).json()["items"] == []

    serve("asgi", check)
