"""100,000 leases ending at once on a real server, both backends: all revoked, never read as live meanwhile.

The leases and their keys are written straight into the log (the file, or the
tables PostgreSQL's write function fills: ``bench/lease_expiry.py`` builds
both), ending a few seconds after the server is ready. From the deadline until
the last revoke record, reads of the ended leases and of their keys must answer
404, and ``/healthz`` must keep answering. How long it takes is printed (and
measured by ``bench/lease_expiry.py``), not asserted: the wait below only bounds
a test that would otherwise hang.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]
BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: bench/profile.py must not shadow the standard library's profile
_leases: Any = importlib.import_module("lease_expiry")  # bench/ is scripts, not a package

LEASES = 100_000
TTL_MS = 3_600_000
GIVE_UP = 240.0  # generous: measured 6 s (file) and 19 s (PostgreSQL) on a loaded two-core machine


def metric(client: httpx.Client, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M)
    assert found is not None, name
    return float(found[1])


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
@pytest.mark.timeout(GIVE_UP + 300)  # the start-up, the build of 100,000 leases, then at most GIVE_UP
def test_100000_leases_ending_at_once_are_all_revoked_and_never_read_as_live(
    tuco: StartTuco, backend: dict[str, str], tmp_path: Path
) -> None:
    """Every lease and key goes; between the deadline and its revoke no ended lease or key is read as live."""
    data = tmp_path / "data"
    lead = 25_000
    deadline = time.time_ns() // 1_000_000 + lead
    if backend:
        asyncio.run(_leases.build_database(backend["TUCO_DATABASE_URL"], LEASES, True, deadline, TTL_MS))
    else:
        _leases.build_file_log(data / "tuco.log", LEASES, True, deadline, TTL_MS)
    server = tuco(data_dir=data, TUCO_MAX_LEASES=str(LEASES), TUCO_REQUEST_TIMEOUT_SECONDS="300", **backend)
    with httpx.Client(base_url=server.url, timeout=300) as client:
        assert (metric(client, "tuco_leases"), metric(client, "tuco_keys")) == (LEASES, LEASES)
        assert time.time_ns() // 1_000_000 < deadline, "the server started after the leases' end"
        live = random.randrange(LEASES)
        assert client.get(f"/v1/leases/{2 * live + 1}").json()["keys"] == [f"k{live}"]
        while time.time_ns() // 1_000_000 < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        reads = 0
        while (metric(client, "tuco_leases"), metric(client, "tuco_keys")) != (0, 0):
            assert time.monotonic() - started < GIVE_UP, "the leases were not all revoked"
            n = random.randrange(LEASES)
            lease, key = client.get(f"/v1/leases/{2 * n + 1}"), client.get(f"/v1/key/k{n}")
            assert (lease.status_code, key.status_code) == (404, 404), f"lease {2 * n + 1} read after its end"
            assert client.get("/healthz").status_code == 200
            reads += 1
        took = time.monotonic() - started
        assert client.get("/v1/keys").json()["items"] == []
        assert client.post("/v1/leases", json={"ttl": 60}).status_code == 201  # the cap is free again
    print(
        f"{LEASES} leases and keys revoked in {took:.1f} s ({backend.get('TUCO_LOG_BACKEND', 'file')}); {reads} reads"
    )
