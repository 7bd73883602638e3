"""/v1/leases: grant, keepalive, revoke, keys attached with ?lease=, over both front ends."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.http.test_ttl import FRONTS, START, Clock, events_of, expirer_rounds, serve, until
from tuco.core.events import EventType
from tuco.service import Limits, Service


async def grant(client: httpx.AsyncClient, ttl: object = 30) -> int:
    response = await client.post("/v1/leases", json={"ttl": ttl})
    assert response.status_code == 201, response.text
    lease = response.json()["id"]
    assert isinstance(lease, int)
    return lease


@pytest.mark.parametrize("front", FRONTS)
def test_grant_answers_the_id_ttl_and_deadline_and_get_shows_the_lease(front: str) -> None:
    """POST /v1/leases {"ttl": 30} is 201 {"id", "ttl", "expires_at", "revision"}; GET /v1/leases/{id} shows it."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        granted = await client.post("/v1/leases", json={"ttl": 30})
        assert (granted.status_code, granted.headers["x-tuco-revision"]) == (201, "1")
        assert granted.json() == {"id": 1, "ttl": 30.0, "expires_at": START + 30_000, "revision": 1}
        put = await client.put("/v1/key/member", params={"lease": "1"}, content=b"m")
        assert (put.status_code, put.headers["etag"], put.headers["x-tuco-expires-at"]) == (
            201,
            '"2"',
            str(START + 30_000),
        )
        shown = await client.get("/v1/leases/1")
        assert (shown.status_code, shown.json()) == (
            200,
            {"id": 1, "ttl": 30.0, "expires_at": START + 30_000, "keys": ["member"]},
        )
        got = await client.get("/v1/key/member")
        assert (got.status_code, got.headers["x-tuco-expires-at"]) == (200, str(START + 30_000))
        string_ttl = await client.post("/v1/leases", json={"ttl": "500ms"})
        assert string_ttl.json() == {"id": 3, "ttl": 0.5, "expires_at": START + 500, "revision": 3}

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_keepalive_extends_the_lease_and_its_keys(front: str) -> None:
    """POST /v1/leases/{id}/keepalive moves the deadline to now + ttl; the keys outlive the old deadline."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        lease = await grant(client, 10)
        await client.put("/v1/key/a", params={"lease": str(lease)}, content=b"a")
        clock.advance(9_000)
        kept = await client.post(f"/v1/leases/{lease}/keepalive")
        assert (kept.status_code, kept.json()) == (
            200,
            {"id": lease, "ttl": 10.0, "expires_at": START + 19_000, "revision": 3},
        )
        clock.advance(5_000)  # past the first deadline, before the new one
        await expirer_rounds(service)
        got = await client.get("/v1/key/a")
        assert (got.status_code, got.headers["x-tuco-expires-at"]) == (200, str(START + 19_000))
        assert [e[1] for e in events_of(service)] == [EventType.LEASE_GRANT, EventType.PUT, EventType.LEASE_KEEPALIVE]

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_an_expired_lease_takes_its_keys_with_it(front: str) -> None:
    """At the lease's deadline its keys are hidden at once; the expirer logs their DELETEs, then the revoke."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        lease = await grant(client, 5)
        for key in ("x", "y"):
            await client.put(f"/v1/key/{key}", params={"lease": str(lease)}, content=b"v")
        await client.put("/v1/key/other", content=b"o")
        clock.advance(5_000)
        assert (await client.get("/v1/key/x")).status_code == 404
        await until(lambda: events_of(service)[-1][1] is EventType.LEASE_REVOKE)
        assert events_of(service)[4:] == [
            (5, EventType.DELETE, "x"),
            (6, EventType.DELETE, "y"),
            (7, EventType.LEASE_REVOKE, ""),
        ]
        late = await client.post(f"/v1/leases/{lease}/keepalive")
        assert (late.status_code, late.json()) == (
            404,
            {"error": "no_such_lease", "message": "no such lease (never granted, revoked, or expired)"},
        )
        assert (await client.get(f"/v1/leases/{lease}")).status_code == 404
        assert (await client.get("/v1/key/other")).content == b"o"
        attach = await client.put("/v1/key/z", params={"lease": str(lease)}, content=b"z")
        assert (attach.status_code, attach.json()["error"]) == (404, "no_such_lease")
        assert "z" not in service.store

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_keepalive_after_the_deadline_is_404_even_before_the_expirer_ran(front: str) -> None:
    """An expired lease cannot be revived: the log decides by its clock, whatever the expirer has done."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        lease = await grant(client, 1)
        await service.expirer.aclose()
        clock.advance(1_000)
        late = await client.post(f"/v1/leases/{lease}/keepalive")
        assert (late.status_code, late.json()["error"]) == (404, "no_such_lease")
        assert (await client.get(f"/v1/leases/{lease}")).status_code == 404

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_revoke_deletes_the_lease_and_its_keys(front: str) -> None:
    """DELETE /v1/leases/{id} writes a DELETE per key, then the revoke; 200 says how many; again is 404."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        lease = await grant(client)
        for key in ("k1", "k2"):
            await client.put(f"/v1/key/{key}", params={"lease": str(lease)}, content=b"v")
        await client.put("/v1/key/k3", params={"lease": str(lease)}, content=b"v")
        await client.put("/v1/key/k3", content=b"detached")  # a PUT without the lease takes the key off it
        revoked = await client.delete(f"/v1/leases/{lease}")
        assert (revoked.status_code, revoked.json(), revoked.headers["x-tuco-revision"]) == (
            200,
            {"id": lease, "revision": 8, "deleted_keys": 2},
            "8",
        )
        assert events_of(service)[5:] == [
            (6, EventType.DELETE, "k1"),
            (7, EventType.DELETE, "k2"),
            (8, EventType.LEASE_REVOKE, ""),
        ]
        assert (await client.get("/v1/key/k1")).status_code == 404
        assert (await client.get("/v1/key/k3")).content == b"detached"
        again = await client.delete(f"/v1/leases/{lease}")
        assert (again.status_code, again.json()["error"]) == (404, "no_such_lease")

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", 'the body must be JSON such as {"ttl": 30}'),
        (b"ttl=30", 'the body must be JSON such as {"ttl": 30}'),
        (b"\xff", 'the body must be JSON such as {"ttl": 30}'),
        (b"[30]", 'the body must be JSON with a ttl in seconds, such as {"ttl": 30}'),
        (b"{}", 'the body must be JSON with a ttl in seconds, such as {"ttl": 30}'),
        (b'{"ttl": true}', 'the body must be JSON with a ttl in seconds, such as {"ttl": 30}'),
        (b'{"ttl": null}', 'the body must be JSON with a ttl in seconds, such as {"ttl": 30}'),
        (b'{"ttl": 0}', "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),
        (b'{"ttl": -1}', "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),
        (b'{"ttl": 1e300}', "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),
        (b'{"ttl": 1.7e308}', "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),  # x 1000 overflows
        (b'{"ttl": -1.7e308}', "ttl must be from 1 ms to 31536000 s (TUCO_MAX_TTL_SECONDS)"),
        (b'{"ttl": NaN}', "ttl must be a finite number of seconds"),
        (b'{"ttl": Infinity}', "ttl must be a finite number of seconds"),
        (b'{"ttl": "abc"}', "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"),
        (b'{"ttl": 30, "pad": "' + b"x" * 2000 + b'"}', 'the body must be a small JSON object such as {"ttl": 30}'),
    ],
)
def test_bad_grants_are_400_and_grant_nothing(front: str, body: bytes, message: str) -> None:
    """A body that is not JSON, lacks a numeric ttl, or asks for 0, a negative, NaN or over the cap: 400."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        response = await client.post("/v1/leases", content=body)
        assert (response.status_code, response.json()) == (400, {"error": "invalid_parameter", "message": message})
        assert len(service.store.leases) == 0
        assert service.revision == 0

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_lease_routes_answer_405_with_allow_and_404_for_unknown_ids(front: str) -> None:
    """Each lease route names its methods in Allow; an id that is no lease, or a path beneath it, is 404."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        listed = await client.delete("/v1/leases")
        assert (listed.status_code, listed.headers["allow"]) == (405, "GET, HEAD, POST")
        post_lease = await client.post("/v1/leases/1")
        assert (post_lease.status_code, post_lease.headers["allow"]) == (405, "GET, HEAD, DELETE")
        get_keepalive = await client.get("/v1/leases/1/keepalive")
        assert (get_keepalive.status_code, get_keepalive.headers["allow"]) == (405, "POST")
        for path in ("/v1/leases/abc", "/v1/leases/0", "/v1/leases/77", "/v1/leases/99999999999999999999"):
            for method in ("GET", "DELETE"):
                response = await client.request(method, path)
                assert (response.status_code, response.json()["error"]) == (404, "no_such_lease"), (method, path)
        keepalive = await client.post("/v1/leases/abc/keepalive")
        assert (keepalive.status_code, keepalive.json()["error"]) == (404, "no_such_lease")
        deeper = await client.get("/v1/leases/1/other")
        assert (deeper.status_code, deeper.json()["error"]) == (404, "not_found")
        assert (await client.get("/v1/key/leases")).status_code == 404  # a key named leases is still a key

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_lease_limits_are_429(front: str) -> None:
    """Over TUCO_MAX_LEASES a grant is 429 lease_limit; over TUCO_MAX_KEYS_PER_LEASE an attach is; nothing written."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        first = await grant(client)
        await grant(client)
        refused = await client.post("/v1/leases", json={"ttl": 30})
        assert (refused.status_code, refused.json()) == (
            429,
            {
                "error": "lease_limit",
                "message": "2 leases are live or being granted, the most this store keeps (TUCO_MAX_LEASES)",
            },
        )
        assert (await client.put("/v1/key/a", params={"lease": str(first)}, content=b"1")).status_code == 201
        assert (await client.put("/v1/key/a", params={"lease": str(first)}, content=b"2")).status_code == 201
        full = await client.put("/v1/key/b", params={"lease": str(first)}, content=b"1")
        assert (full.status_code, full.json()) == (
            429,
            {
                "error": "lease_limit",
                "message": "the lease holds 1 keys, the most one lease may hold (TUCO_MAX_KEYS_PER_LEASE)",
            },
        )
        assert "b" not in service.store
        assert service.revision == 4

    serve(front, check, limits=Limits(max_leases=2, max_keys_per_lease=1))


@pytest.mark.parametrize("front", FRONTS)
def test_a_lock_from_a_lease_and_a_create_only_put(front: str) -> None:
    """The README's lock: a create-only key on a lease; once the holder stops renewing, another takes it."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        holder = await grant(client, 10)
        taken = await client.put(
            "/v1/key/lock", params={"lease": str(holder)}, content=b"holder", headers={"If-None-Match": "*"}
        )
        assert taken.status_code == 201
        contender = await grant(client, 10)
        busy = await client.put(
            "/v1/key/lock", params={"lease": str(contender)}, content=b"contender", headers={"If-None-Match": "*"}
        )
        assert busy.status_code == 412
        clock.advance(9_000)
        assert (await client.post(f"/v1/leases/{contender}/keepalive")).status_code == 200
        clock.advance(1_000)  # the holder stopped renewing: its lease, and the lock, expire
        await until(lambda: "lock" not in service.store)
        won = await client.put(
            "/v1/key/lock", params={"lease": str(contender)}, content=b"contender", headers={"If-None-Match": "*"}
        )
        assert won.status_code == 201
        assert (await client.get("/v1/key/lock")).content == b"contender"

    serve(front, check)


def test_revoking_a_lease_with_many_keys_deletes_every_one_once() -> None:
    """A lease holding 2,000 keys: DELETE /v1/leases/{id} answers once all are deleted, each by one DELETE."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        lease = await grant(client)
        await asyncio.gather(*(service.put_expiring(f"k{n}", b"v", None, lease=lease) for n in range(2_000)))
        revoked = await client.delete(f"/v1/leases/{lease}")
        assert (revoked.status_code, revoked.json()["deleted_keys"]) == (200, 2_000)
        deletes = [e for e in events_of(service) if e[1] is EventType.DELETE]
        assert sorted(e[2] for e in deletes) == sorted(f"k{n}" for n in range(2_000))
        assert events_of(service)[-1][1] is EventType.LEASE_REVOKE
        assert len(service.store) == 0

    serve("asgi", check)
