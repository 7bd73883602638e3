"""The store bound against the real server on both backends: 507 at the bound, the same after a restart and on
every PostgreSQL replica."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tuco.core.store import ENTRY_BYTES

StartTuco = Callable[..., TucoProcess]
ONE = 2 + 1000 + ENTRY_BYTES  # a key "kN" with a 1,000-byte value
BOUND = 5 * ONE


def _fill(http: httpx.Client, count: int) -> None:
    for n in range(count):
        answer = http.put(f"/v1/key/k{n}", content=b"v" * 1000)
        assert answer.status_code == 201, answer.text


def _store(http: httpx.Client) -> dict[str, object]:
    ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    store = ready.json()["store"]
    assert isinstance(store, dict)
    return store


def test_filling_to_the_bound_refuses_the_next_write_and_serves_reads_and_deletes(
    tuco: StartTuco, backend: dict[str, str]
) -> None:
    """Five keys fill the bound; the sixth is 507 store_full; reads and deletes work; a delete makes room; a
    restart (replay, or the database's state) counts the same bytes and refuses the same write."""
    server = tuco(TUCO_MAX_STORE_BYTES=str(BOUND), **backend)
    with server.client() as http:
        _fill(http, 5)
        refused = http.put("/v1/key/k5", content=b"v" * 1000)
        assert (refused.status_code, refused.json()["error"]) == (507, "store_full")
        assert http.get("/v1/key/k5").status_code == 404
        got = http.get("/v1/key/k4")
        assert (got.status_code, got.content) == (200, b"v" * 1000)
        assert _store(http) == {"bytes": BOUND, "max_bytes": BOUND, "keys": 5, "max_keys": 10_000_000, "full": True}
        assert http.delete("/v1/key/k0").status_code == 200
        assert http.put("/v1/key/k5", content=b"v" * 1000).status_code == 201
        assert http.put("/v1/key/k6", content=b"v" * 1000).status_code == 507
    assert server.terminate() == 0
    again = tuco(TUCO_MAX_STORE_BYTES=str(BOUND), **backend)
    with again.client() as http:
        assert _store(http)["bytes"] == BOUND
        assert http.put("/v1/key/k6", content=b"v" * 1000).status_code == 507
        assert http.put("/v1/key/k1", content=b"short").status_code == 201
        assert _store(http) == {
            "bytes": BOUND - 995,
            "max_bytes": BOUND,
            "keys": 5,
            "max_keys": 10_000_000,
            "full": False,
        }


@pytest.mark.postgres
def test_every_postgres_replica_refuses_at_the_bound_it_has_applied(tuco: StartTuco, pg_dsn: str) -> None:
    """Two replicas with one bound: filled through one, the other (having applied the same writes) refuses too;
    a delete through the other makes room on both."""
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn, "TUCO_MAX_STORE_BYTES": str(BOUND)}
    a, b = tuco(**env), tuco(**env)
    with a.client() as first, b.client() as second:
        _fill(first, 5)
        _wait(lambda: _store(second)["bytes"] == BOUND, "replica b applied the five writes")
        refused = second.put("/v1/key/k5", content=b"v" * 1000)
        assert (refused.status_code, refused.json()["error"]) == (507, "store_full")
        assert first.put("/v1/key/k5", content=b"v" * 1000).status_code == 507
        assert second.delete("/v1/key/k0").status_code == 200
        _wait(lambda: _store(first)["bytes"] == BOUND - ONE, "replica a applied the delete")
        assert first.put("/v1/key/k5", content=b"v" * 1000).status_code == 201
        assert _store(first) == _store(second) or _wait(lambda: _store(second) == _store(first), "same size")


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return True
