"""Expiry with PostgreSQL replicas: one DELETE per key whoever expires it, keepalives across replicas, bootstrap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess
from tests.fix_proxy import Proxy

StartTuco = Callable[..., TucoProcess]
pytestmark = pytest.mark.postgres


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def replicas(tuco: StartTuco, pg_dsn: str, count: int = 2) -> list[TucoProcess]:
    return [
        tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn, TUCO_DATA_DIR=f"/nonexistent/{n}")
        for n in range(count)
    ]


def fetch(pg_dsn: str, statement: str) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return [tuple(row) for row in await conn.fetch(statement)]
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_replicas_expiring_the_same_keys_write_one_delete_each(tuco: StartTuco, pg_dsn: str) -> None:
    """Both replicas run expirers over the same 50 keys: tuco_events holds exactly one DELETE per key."""
    first, second = replicas(tuco, pg_dsn)
    keys = [f"both/{n}" for n in range(50)]
    with httpx.Client(timeout=10) as client:
        for n, key in enumerate(keys):  # written through both, so both replicas hold every key
            url = (first if n % 2 else second).url
            assert client.put(url + key_path(key), params={"ttl": "1s"}, content=b"v").status_code == 201
        for replica in (first, second):
            assert client.get(replica.url + key_path(keys[0]), params={"consistent": "true"}).status_code == 200
        wait_until(lambda: fetch(pg_dsn, "SELECT count(*) FROM tuco_state")[0][0] == 0)
        time.sleep(0.5)  # every expirer round that could double a DELETE has run
        for replica in (first, second):  # and each replica saw the expiry
            assert all(client.get(replica.url + key_path(key)).status_code == 404 for key in keys)
    deletes = fetch(pg_dsn, "SELECT convert_from(key, 'UTF8'), count(*) FROM tuco_events WHERE type = 2 GROUP BY key")
    assert sorted(deletes) == [(key, 1) for key in sorted(keys)]
    assert fetch(pg_dsn, "SELECT count(*) FROM tuco_events")[0][0] == 100


def test_a_keepalive_on_one_replica_holds_the_keys_on_the_other(tuco: StartTuco, pg_dsn: str) -> None:
    """A lease granted on A, its key put on A, kept alive on B: neither replica expires the key meanwhile."""
    a, b = replicas(tuco, pg_dsn)
    with httpx.Client(timeout=10) as client:
        lease = client.post(a.url + "/v1/leases", json={"ttl": 1}).json()
        assert client.put(a.url + key_path("held"), params={"lease": str(lease["id"])}, content=b"v").status_code == 201
        while now_ms() < lease["expires_at"] + 1500:
            kept = client.post(f"{b.url}/v1/leases/{lease['id']}/keepalive")
            assert kept.status_code == 200, kept.text
            time.sleep(0.3)
        for replica in (a, b):
            got = client.get(replica.url + key_path("held"), params={"consistent": "true"})
            assert (got.status_code, got.content) == (200, b"v")
        assert fetch(pg_dsn, "SELECT count(*) FROM tuco_events WHERE type = 2") == [(0,)]
        revoked = client.delete(f"{b.url}/v1/leases/{lease['id']}")
        assert (revoked.status_code, revoked.json()["deleted_keys"]) == (200, 1)
        assert client.get(a.url + key_path("held"), params={"consistent": "true"}).status_code == 404
        assert client.post(f"{a.url}/v1/leases/{lease['id']}/keepalive").status_code == 404


def test_a_fresh_replica_bootstraps_deadlines_and_leases(tuco: StartTuco, pg_dsn: str) -> None:
    """A replica started later shows the same deadlines and lease, and expires them on time by the database's clock."""
    (first,) = replicas(tuco, pg_dsn, 1)
    with httpx.Client(timeout=10) as client:
        # 8 s: the late replica must be serving before they end (2 s was not, once, on a loaded CI machine).
        lease = client.post(first.url + "/v1/leases", json={"ttl": 8}).json()
        client.put(first.url + key_path("leased"), params={"lease": str(lease["id"])}, content=b"l")
        own = int(
            client.put(first.url + key_path("own"), params={"ttl": "8s"}, content=b"o").headers["x-tuco-expires-at"]
        )
        client.put(first.url + key_path("plain"), content=b"p")
        first.terminate()
        (late,) = replicas(tuco, pg_dsn, 1)
        assert client.get(late.url + key_path("own")).headers["x-tuco-expires-at"] == str(own)
        assert client.get(late.url + key_path("leased")).headers["x-tuco-expires-at"] == str(lease["expires_at"])
        assert client.get(f"{late.url}/v1/leases/{lease['id']}").json()["keys"] == ["leased"]
        wait_until(lambda: client.get(late.url + key_path("own")).status_code == 404, timeout=20.0)
        assert now_ms() >= own
        wait_until(lambda: client.get(late.url + key_path("leased")).status_code == 404, timeout=20.0)
        assert client.get(late.url + key_path("plain")).content == b"p"
        wait_until(lambda: fetch(pg_dsn, "SELECT count(*) FROM tuco_leases") == [(0,)])


def test_a_key_expiring_while_the_database_is_away_is_hidden_then_deleted_once(
    tuco: StartTuco, pg_proxy: Proxy, pg_dsn: str
) -> None:
    """The database goes away across a deadline: reads hide the key anyway; once it is back, one DELETE is written."""
    server = tuco(
        TUCO_LOG_BACKEND="postgres",
        TUCO_DATABASE_URL=pg_proxy.dsn,
        TUCO_DATABASE_WRITE_TIMEOUT_SECONDS="1",
        TUCO_POLL_INTERVAL_SECONDS="0.05",
    )
    with httpx.Client(base_url=server.url, timeout=10) as client:
        put = client.put(key_path("k"), params={"ttl": "1s"}, content=b"v")
        deadline = int(put.headers["x-tuco-expires-at"])
        pg_proxy.stop()
        try:
            time.sleep(max(0, deadline + 2500 - now_ms()) / 1000)  # the expirer's writes fail meanwhile
            assert client.get(key_path("k")).status_code == 404
            assert client.get("/readyz").status_code == 503
        finally:
            pg_proxy.start()
        wait_until(lambda: fetch(pg_dsn, "SELECT count(*) FROM tuco_events WHERE type = 2") == [(1,)], timeout=15)
        time.sleep(0.5)
        assert fetch(pg_dsn, "SELECT sequence, type, convert_from(key, 'UTF8') FROM tuco_events ORDER BY 1") == [
            (1, 1, "k"),
            (2, 2, "k"),
        ]
        assert client.get(key_path("k")).status_code == 404


def test_the_other_replica_expires_the_keys_of_a_killed_one(tuco: StartTuco, pg_dsn: str) -> None:
    """A replica killed before the deadline of the keys it wrote: the surviving one deletes each of them once."""
    writer, survivor = replicas(tuco, pg_dsn)
    with httpx.Client(timeout=10) as client:
        for n in range(20):
            assert client.put(writer.url + key_path(f"k{n}"), params={"ttl": "1s"}, content=b"v").status_code == 201
        writer.kill()
        wait_until(lambda: fetch(pg_dsn, "SELECT count(*) FROM tuco_state") == [(0,)])
        assert all(client.get(survivor.url + key_path(f"k{n}")).status_code == 404 for n in range(20))
    assert fetch(pg_dsn, "SELECT count(*), count(DISTINCT key) FROM tuco_events WHERE type = 2") == [(20, 20)]
