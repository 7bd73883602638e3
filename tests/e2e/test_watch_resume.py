"""A resume point the store has not reached: a restored backup refuses it, a lagging replica catches up first.

When a server is restored from an older backup, clients reconnect with a
``Last-Event-ID`` from before the restore. Serving it would skip every write
from the store's revision up to it; the server says ``409 revision_ahead``
instead, and ``tuco watch`` exits 8 telling its user to re-sync. A PostgreSQL
replica that has simply not applied a revision yet catches up first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess
from tests.e2e.test_watch_cli import Lines, watch

StartTuco = Callable[..., TucoProcess]


def wait_for_watchers(client: httpx.Client, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while f"\ntuco_watchers {count}.0\n" not in client.get("/metrics").text:
        assert time.monotonic() < deadline, "the watch did not open"
        time.sleep(0.02)


def test_tuco_watch_exits_8_when_the_server_it_reconnects_to_was_restored_from_an_older_backup(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """The watcher saw revision 6; the server comes back from a backup at 3: 409 revision_ahead, exit 8, no lines."""
    port = str(free_port())
    data = tmp_path / "data"
    server = tuco(TUCO_PORT=port, data_dir=data)
    with server.client() as client:
        for n in range(1, 4):
            assert client.put(f"/v1/key/k{n}", content=b"old").status_code == 201
    assert server.terminate() == 0
    shutil.copytree(data, tmp_path / "backup")  # a backup of the stopped server, at revision 3
    server = tuco(TUCO_PORT=port, data_dir=data)
    watcher = watch(server.url)  # from now: revision 3
    lines = Lines(watcher)
    with server.client() as client:
        wait_for_watchers(client, 1)
        for n in range(4, 7):
            assert client.put(f"/v1/key/k{n}", content=b"new").status_code == 201
    assert lines.wait(3) == ["4\tput\tk4\tnew", "5\tput\tk5\tnew", "6\tput\tk6\tnew"]
    assert server.terminate() == 0
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)
    server = tuco(TUCO_PORT=port, data_dir=data)
    code = watcher.wait(30)
    assert watcher.stderr is not None
    errors = watcher.stderr.read().decode()
    watcher.stderr.close()
    lines.close()
    assert code == 8
    assert errors == (
        "tuco: 409 revision_ahead: the server's store is at revision 3, behind revision 6 this watch resumes "
        "after (restored from an older state?); what was printed after 3 may not exist there: re-read the keys, "
        "then watch again (without --from)\n"
    )
    assert len(lines.lines) == 3
    with server.client() as client:
        refused = client.get("/v1/watch", headers={"Last-Event-ID": "6"})
        assert (refused.status_code, refused.json()["revision"], refused.json()["requested"]) == (409, 3, 6)
        assert client.get("/v1/key/k1", params={"wait_revision": "7"}).status_code == 409
    again = subprocess.run(
        [sys.executable, "-m", "tuco", "watch", "--from", "5"],
        env={**os.environ, "TUCO_URL": server.url},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert again.returncode == 8


@pytest.mark.postgres
def test_a_replica_catches_up_to_a_resume_point_it_has_not_applied_and_refuses_one_nobody_reached(
    tuco: StartTuco, pg_dsn: str
) -> None:
    """B has not applied A's writes (no notify, no poll): it catches up and serves them; past the database, 409."""
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn}
    a = tuco(**env)
    b = tuco(**env, TUCO_LISTEN_NOTIFY="false", TUCO_POLL_INTERVAL_SECONDS="3600")
    with httpx.Client(base_url=a.url, timeout=30) as client:
        last = 0
        for n in range(5):
            response = client.put(f"/v1/key/k{n}", content=b"v")
            assert response.status_code == 201
            last = int(response.headers["x-tuco-revision"])
    with httpx.Client(base_url=b.url, timeout=30) as client:
        assert client.get("/v1/key/k4").status_code == 404  # B has not applied them
        with client.stream("GET", "/v1/watch", headers={"Last-Event-ID": str(last)}) as stream:
            assert stream.status_code == 200
            opening = next(stream.iter_raw())
            assert f": watching after revision {last}\n".encode() in opening
        assert client.get("/v1/key/k4").status_code == 200  # caught up
        refused = client.get("/v1/watch", headers={"Last-Event-ID": str(last + 20)})
        assert refused.status_code == 409
        assert (refused.json()["error"], refused.json()["revision"]) == ("revision_ahead", last)
        polled = client.get("/v1/key/k0", params={"wait_revision": str(last + 21), "timeout": "1s"})
        assert polled.status_code == 409
        waited = client.get("/v1/key/k0", params={"wait_revision": str(last + 1), "timeout": "100ms"})
        assert (waited.status_code, waited.headers["x-tuco-wait"]) == (200, "timeout")
