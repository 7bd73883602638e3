"""A database outage as clients of `tuco serve` see it: writes ride out the write timeout, then answer 503."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tests.fix_db import eventually
from tests.fix_proxy import Proxy

pytestmark = pytest.mark.postgres

StartTuco = Callable[..., TucoProcess]

WRITE_TIMEOUT = 3.0
NOT_STORED = {
    "error": "log_unavailable",
    "message": "not stored: the database is out of reach; the write may have been stored, and retrying it is safe",
}


def _replica(tuco: StartTuco, proxy: Proxy) -> TucoProcess:
    return tuco(
        TUCO_LOG_BACKEND="postgres",
        TUCO_DATABASE_URL=proxy.dsn,
        TUCO_DATABASE_WRITE_TIMEOUT_SECONDS=str(WRITE_TIMEOUT),
        TUCO_POLL_INTERVAL_SECONDS="0.05",
    )


def _ready(server: TucoProcess) -> bool:
    with server.client() as http:
        return http.get("/readyz").status_code == 200


def test_a_write_rides_out_an_outage_shorter_than_the_write_timeout(tuco: StartTuco, pg_proxy: Proxy) -> None:
    """The database is away for 0.5 s while a PUT is in flight: it answers 201, not 503."""
    server = _replica(tuco, pg_proxy)
    with server.client() as http:
        assert http.put("/v1/key/before", content=b"1").status_code == 201
        pg_proxy.stop()
        restart = threading.Timer(0.5, pg_proxy.start)
        restart.start()
        try:
            response = http.put("/v1/key/during", content=b"2")
        finally:
            restart.join()
        assert (response.status_code, response.content) == (201, b"")
        assert http.get("/v1/key/during").content == b"2"


def test_writes_answer_503_once_the_outage_outlasts_the_write_timeout(
    tuco: StartTuco, pg_proxy: Proxy, pg_dsn: str
) -> None:
    """A PUT waits out the whole write timeout before its 503; later PUTs of the same outage answer at once."""
    server = _replica(tuco, pg_proxy)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.put("/v1/key/before", content=b"1").status_code == 201
        lost = time.monotonic()
        pg_proxy.stop()
        first = http.put("/v1/key/during", content=b"2")
        waited = time.monotonic() - lost
        assert (first.status_code, first.json()) == (503, NOT_STORED)
        assert waited >= WRITE_TIMEOUT, f"503 after {waited:.2f} s, before the {WRITE_TIMEOUT} s write timeout"
        started = time.monotonic()
        second = http.put("/v1/key/later", content=b"3")
        assert (second.status_code, second.json()) == (503, NOT_STORED)
        assert time.monotonic() - started < WRITE_TIMEOUT, "a write of a known outage waited a whole budget again"
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert set(ready.json()["log"]) == {"backend", "last_sequence", "lag_events", "lag_seconds", "connected"}
        database = urlsplit(pg_dsn)
        for where in (database.path.strip("/"), "127.0.0.1", str(pg_proxy.port)):  # the user is "postgres"
            assert where not in ready.text
        pg_proxy.start()
        eventually(lambda: _ready(server), what="ready again after the outage")
        assert http.put("/v1/key/after", content=b"4").status_code == 201
        assert http.get("/v1/key/after").content == b"4"
