"""Several real ``tuco serve`` replicas on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import asyncpg
import httpx
import pytest

from tests import build
from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess
from tests.fix_db import eventually, last_value_per_key
from tuco import __version__

pytestmark = pytest.mark.postgres

StartTuco = Callable[..., TucoProcess]

# Without ?consistent=true a replica is behind by at most one poll interval plus the
# time to apply; the tests allow 5 s on a loaded 2-core machine (the README states 1 s typical).
FOLLOW_BOUND_SECONDS = 5.0


def _replica(tuco: StartTuco, dsn: str, name: str, **env: str) -> TucoProcess:
    return tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=dsn, TUCO_DATA_DIR=f"/nonexistent/{name}", **env)


def _state(url: str, keys: list[str], *, consistent: bool = False) -> dict[str, bytes]:
    state = {}
    with httpx.Client(base_url=url, timeout=10) as http:
        for key in keys:
            response = http.get(key_path(key), params={"consistent": "true"} if consistent else None)
            assert response.status_code in (200, 404)
            if response.status_code == 200:
                state[key] = response.content
    return state


def test_write_on_one_replica_is_readable_on_the_other(tuco: StartTuco, pg_dsn: str) -> None:
    """Consistent reads see another replica's PUT at once; default reads within the stated bound."""
    first = _replica(tuco, pg_dsn, "a")
    second = _replica(tuco, pg_dsn, "b", TUCO_POLL_INTERVAL_SECONDS="60", TUCO_LISTEN_NOTIFY="false")
    with first.client() as a, second.client() as b:
        assert a.put("/v1/key/shared", content=b"from a").status_code == 201
        consistent = b.get("/v1/key/shared", params={"consistent": "true"})
        assert (consistent.status_code, consistent.content) == (200, b"from a")
        assert b.put("/v1/key/other", content=b"from b").status_code == 201
        eventually(lambda: a.get("/v1/key/other").status_code == 200, timeout=FOLLOW_BOUND_SECONDS, what="a follows")
        got = a.get("/v1/key/other")
        assert (got.status_code, got.content) == (200, b"from b")
        assert b.get("/readyz").json() == {
            "ready": True,
            "phase": "serving",
            "version": __version__,
            "build": build.EXPECTED,
            "log": {"backend": "postgres", "last_sequence": 2, "lag_events": 0, "lag_seconds": 0.0, "connected": True},
            "store": {
                "bytes": 2 * 240 + len("shared") + len(b"from a") + len("other") + len(b"from b"),
                "max_bytes": 1 << 30,
                "keys": 2,
                "max_keys": 10_000_000,
                "full": False,
            },
        }


def test_concurrent_writers_on_two_replicas_converge_to_the_log(tuco: StartTuco, pg_dsn: str) -> None:
    """Both replicas write the same keys at once and end identical, equal to the last event per key."""
    replicas = [_replica(tuco, pg_dsn, "a"), _replica(tuco, pg_dsn, "b")]
    keys = [f"k{n}" for n in range(20)]

    async def writer(url: str, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for counter in range(60):
                key = rng.choice(keys)
                if rng.random() < 0.15:
                    assert (await http.delete(key_path(key))).status_code == 200
                else:
                    assert (await http.put(key_path(key), content=f"{seed}-{counter}".encode())).status_code == 201

    async def burst() -> None:
        await asyncio.gather(*(writer(replicas[n % 2].url, n) for n in range(16)))

    asyncio.run(burst())
    expected = asyncio.run(last_value_per_key(pg_dsn))
    assert _state(replicas[0].url, keys, consistent=True) == expected
    assert _state(replicas[1].url, keys, consistent=True) == expected
    assert _state(replicas[0].url, keys) == _state(replicas[1].url, keys) == expected


def test_follower_never_misses_an_event_from_many_writer_processes(tuco: StartTuco, pg_dsn: str) -> None:
    """Three writer processes race while a fourth only follows; it ends at the head with the table's state."""
    writers = [_replica(tuco, pg_dsn, f"w{n}") for n in range(3)]
    follower = _replica(tuco, pg_dsn, "follower", TUCO_POLL_INTERVAL_SECONDS="0.05")
    keys = [f"key {n}" for n in range(50)]

    async def writer(url: str, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for counter in range(40):
                response = await http.put(key_path(rng.choice(keys)), content=f"{seed}:{counter}".encode())
                assert response.status_code == 201

    async def burst() -> None:
        await asyncio.gather(*(writer(writers[n % 3].url, n) for n in range(24)))

    asyncio.run(burst())
    expected = asyncio.run(last_value_per_key(pg_dsn))
    with follower.client() as http:
        eventually(
            lambda: http.get("/readyz").json()["log"]["last_sequence"] == 24 * 40,
            timeout=FOLLOW_BOUND_SECONDS,
            what="the follower at the head",
        )
    assert _state(follower.url, keys) == expected


def test_terminated_backends_mid_burst_lose_nothing_and_apply_nothing_twice(tuco: StartTuco, pg_dsn: str) -> None:
    """pg_terminate_backend on the replicas' connections during writes: acknowledged writes all stored, once."""
    first = _replica(tuco, pg_dsn, "a")
    second = _replica(tuco, pg_dsn, "b")
    acknowledged: dict[str, bytes] = {}

    async def writer(number: int) -> None:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            for counter in range(80):
                key, value = f"w{number}-{counter}", f"{number}/{counter}".encode()
                response = await http.put(key_path(key), content=value)
                if response.status_code == 201:
                    acknowledged[key] = value
                else:
                    assert response.status_code == 503, response.text

    async def terminator() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            for _ in range(5):
                await asyncio.sleep(0.15)
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        finally:
            await conn.close()

    async def scenario() -> None:
        await asyncio.gather(terminator(), *(writer(n) for n in range(16)))

    asyncio.run(scenario())
    assert len(acknowledged) > 0
    expected = asyncio.run(last_value_per_key(pg_dsn))
    assert {key: expected.get(key) for key in acknowledged} == acknowledged
    with second.client() as http:
        assert http.put("/v1/key/after", content=b"resumed").status_code == 201
    keys = [*acknowledged, "after"]
    eventually(
        lambda: _state(first.url, ["after"]) == {"after": b"resumed"}, timeout=FOLLOW_BOUND_SECONDS, what="a follows"
    )
    assert _state(first.url, keys) == {**acknowledged, "after": b"resumed"}
    assert _state(second.url, keys, consistent=True) == {**acknowledged, "after": b"resumed"}


def test_a_replica_started_after_a_trailing_delete_is_at_the_head(tuco: StartTuco, pg_dsn: str) -> None:
    """A new replica's store ends its bootstrap at the head even when the head is a DELETE (metrics and stop say so)."""
    first = _replica(tuco, pg_dsn, "a")
    with first.client() as a:
        assert a.put("/v1/key/gone", content=b"1").status_code == 201
        assert a.put("/v1/key/kept", content=b"2").status_code == 201
        assert a.delete("/v1/key/gone").status_code == 200
    second = _replica(tuco, pg_dsn, "b")
    with second.client() as b:
        assert b.get("/readyz").json()["log"]["last_sequence"] == 3
        metrics = b.get("/metrics").text.splitlines()
        assert [line for line in metrics if line.startswith("tuco_last_sequence ")] == ["tuco_last_sequence 3.0"]
        assert (b.get("/v1/key/gone").status_code, b.get("/v1/key/kept").content) == (404, b"2")
    assert second.terminate() == 0
    assert [e["last_sequence"] for e in second.events() if e["event"] == "stopped"] == [3]
