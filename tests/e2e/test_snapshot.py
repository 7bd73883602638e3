"""Online snapshots of real servers: consistent under writers, restorable on either backend, round trips exact."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess
from tests.http.test_auth import BOOTSTRAP, bearer
from tuco.core.snapshot import KeyRecord, LeaseRecord, SnapshotDecoder, SnapshotSummary, TokenEntry
from tuco.http.params import encode_page_token

StartTuco = Callable[..., TucoProcess]
ADMIN = bearer(BOOTSTRAP)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``tuco ARGS`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "tuco", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def records(path: Path) -> tuple[SnapshotSummary, set[KeyRecord], set[LeaseRecord], set[TokenEntry]]:
    """A snapshot file's summary and its keys, leases and tokens (verified)."""
    decoder = SnapshotDecoder()
    items = decoder.feed(path.read_bytes())
    summary = decoder.finish()
    keys = {item for item in items if isinstance(item, KeyRecord)}
    leases = {item for item in items if isinstance(item, LeaseRecord)}
    tokens = {item for item in items if isinstance(item, TokenEntry)}
    return summary, keys, leases, tokens


def listing_at(http: httpx.Client, revision: int) -> list[tuple[str, bytes, int, int, int]]:
    """Every key as the server lists it at ``revision`` (a page token pins the revision), with its revisions."""
    import base64

    found: list[tuple[str, bytes, int, int, int]] = []
    token: str | None = encode_page_token(revision, "", "")
    while token is not None:
        answer = http.get("/v1/keys", params={"page_token": token, "limit": 1000}, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["revision"] == revision
        for item in page["items"]:
            value = base64.b64decode(item["value"])
            found.append((item["key"], value, item["create_revision"], item["mod_revision"], item["version"]))
        token = page["next_page_token"]
    return found


def as_listed(keys: set[KeyRecord]) -> list[tuple[str, bytes, int, int, int]]:
    return sorted((k.key, k.value, k.create_revision, k.mod_revision, k.version) for k in keys)


def save(server: TucoProcess, path: Path, token: str = BOOTSTRAP) -> SnapshotSummary:
    """``tuco snapshot save`` against ``server``; the summary of what it saved."""
    done = cli("snapshot", "save", str(path), "--url", server.url, "--token", token)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"saved {path}\n")
    return records(path)[0]


def writers(server: TucoProcess, stop: threading.Event, count: int = 16) -> list[threading.Thread]:
    """``count`` threads writing and deleting keys as fast as they can until ``stop``."""

    def write(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=server.url, headers=dict(ADMIN), timeout=30) as http:
            while not stop.is_set():
                key = key_path(f"w/{rng.randrange(3000):03d}")
                if rng.random() < 0.2:
                    http.delete(key)
                else:
                    http.put(key, content=rng.randbytes(rng.randrange(1, 64)))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    return threads


def secured(tmp_path: Path, **env: str) -> dict[str, str]:
    secret = tmp_path / "bootstrap"
    secret.write_text(BOOTSTRAP + "\n")
    return {"TUCO_AUTH": "token", "TUCO_BOOTSTRAP_TOKEN_FILE": str(secret), **env}


def consistent_under_writers(server: TucoProcess, tmp_path: Path) -> None:
    """Snapshot while 16 writers run: it equals the server's own listing at its revision, key by key."""
    with server.client(headers=dict(ADMIN)) as http:
        for n in range(3000):
            assert http.put(key_path(f"w/{n:03d}"), content=b"%04d" % n * 512).status_code == 201
    stop = threading.Event()
    threads = writers(server, stop)
    path = tmp_path / "under-writers.snap"
    try:
        with (
            server.client() as http,
            http.stream("GET", "/v1/snapshot", headers=ADMIN) as stream,
            path.open("wb") as out,
        ):
            assert stream.status_code == 200
            for chunk in stream.iter_raw(64 << 10):  # a slow reader: the stream pauses and writes go on meanwhile
                out.write(chunk)
                time.sleep(0.01)
        summary = records(path)[0]
        assert int(stream.headers["x-tuco-revision"]) == summary.revision
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    _, keys, _, _ = records(path)
    with server.client() as http:
        after = int(http.get("/v1/keys", params={"limit": 1}, headers=ADMIN).headers["x-tuco-revision"])
        assert after > summary.revision  # writes went on during and after it
        assert as_listed(keys) == listing_at(http, summary.revision)


@pytest.mark.xdist_group("heavy")
def test_a_snapshot_under_16_writers_is_the_listing_at_its_revision_on_the_file_log(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """File log: a snapshot taken under 16 writers equals, key by key, the listing at the snapshot's revision."""
    consistent_under_writers(tuco(**secured(tmp_path)), tmp_path)


@pytest.mark.postgres
@pytest.mark.xdist_group("heavy")
def test_a_snapshot_under_16_writers_is_the_listing_at_its_revision_on_postgres(
    tuco: StartTuco, tmp_path: Path, pg_dsn: str
) -> None:
    """PostgreSQL: a snapshot taken under 16 writers equals, key by key, the listing at the snapshot's revision."""
    env = secured(tmp_path, TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    consistent_under_writers(tuco(**env), tmp_path)


def populate(server: TucoProcess) -> tuple[str, int]:
    """Keys of every byte value, expiring and leased keys, a lease and a token; the token and the lease id."""
    with server.client(headers=dict(ADMIN)) as http:
        for n in range(50):
            assert http.put(key_path(f"bytes/{n}"), content=bytes(range(256)) * (n % 3)).status_code == 201
        assert http.put(key_path("ttl/a"), params={"ttl": "1h"}, content=b"soon").status_code == 201
        lease = http.post("/v1/leases", json={"ttl": 3600}).json()["id"]
        assert http.put(key_path("leased/a"), params={"lease": lease}, content=b"L").status_code == 201
        assert http.delete(key_path("bytes/7")).status_code == 200
        assert http.put(key_path("bytes/8"), content=b"again").status_code == 201
        created = http.post("/v1/tokens", json={"grants": [{"prefix": "bytes/", "permission": "read"}]})
        assert created.status_code == 201
        assert http.delete(key_path("gone"), headers=dict(ADMIN)).status_code == 200  # the head is a DELETE
        return created.json()["token"], lease


@pytest.mark.postgres
@pytest.mark.xdist_group("heavy")
def test_file_to_postgres_to_file_round_trip_keeps_the_state_exactly(
    tuco: StartTuco, tmp_path: Path, pg_dsn: str
) -> None:
    """File -> snapshot -> PostgreSQL -> snapshot -> file: same keys, revisions, leases and tokens; a watch resumes."""
    source = tuco(data_dir=tmp_path / "source", **secured(tmp_path))
    token, lease = populate(source)
    first = tmp_path / "first.snap"
    summary = save(source, first)
    with source.client() as http:
        listed = listing_at(http, summary.revision)
    assert source.terminate() == 0

    restored = cli("snapshot", "restore", str(first), "--database-url", pg_dsn)
    assert restored.returncode == 0, restored.stderr
    on_pg = tuco(
        data_dir=tmp_path / "unused", **secured(tmp_path, TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    )
    second = tmp_path / "second.snap"
    assert save(on_pg, second).revision == summary.revision
    with on_pg.client() as http:
        assert listing_at(http, summary.revision) == listed
        assert http.get(key_path("bytes/1"), headers=bearer(token)).content == bytes(range(256))
        assert http.get(f"/v1/leases/{lease}", headers=ADMIN).status_code == 200
        # A watcher resuming at the snapshot's revision is served what comes next, at the next revision.
        with http.stream(
            "GET", "/v1/watch", params={"prefix": "bytes/", "start_revision": summary.revision + 1}, headers=ADMIN
        ) as stream:
            assert stream.status_code == 200
            assert http.put(key_path("bytes/new"), content=b"n", headers=ADMIN).status_code == 201
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    assert '"bytes/new"' in line
                    assert f'"mod_revision":{summary.revision + 1}' in line.replace(" ", "")
                    break
    assert on_pg.terminate() == 0

    back = tmp_path / "back"
    done = cli("snapshot", "restore", str(second), "--data-dir", str(back))
    assert done.returncode == 0, done.stderr
    on_file = tuco(data_dir=back, **secured(tmp_path))
    third = tmp_path / "third.snap"
    save(on_file, third)
    with on_file.client() as http:
        assert listing_at(http, summary.revision) == listed
        # Resumed here at the snapshot's revision too (a file log keeps no history before it): the next write is served.
        params: dict[str, str | int] = {"key": "bytes/2", "start_revision": summary.revision + 1}
        with http.stream("GET", "/v1/watch", params=params, headers=ADMIN) as stream:
            assert stream.status_code == 200
            assert http.put(key_path("bytes/2"), content=b"on file", headers=ADMIN).status_code == 201
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    assert f'"mod_revision":{summary.revision + 1}' in line.replace(" ", "")
                    break
        assert http.get(key_path("bytes/1"), headers=bearer(token)).content == bytes(range(256))
        assert http.get(key_path("ttl/a"), headers=ADMIN).headers["x-tuco-expires-at"]
    one, two, three = records(first), records(second), records(third)
    assert one[1:] == two[1:] == three[1:]
    assert one[0].revision == two[0].revision == three[0].revision == summary.revision
    assert len(one[2]) == 1 and len(one[3]) == 1


def test_a_snapshot_needs_an_admin_and_a_read_grant_is_refused(tuco: StartTuco, tmp_path: Path) -> None:
    """GET /v1/snapshot is admin only: no credential is 401, a read token 403, the CLI exits 6 and saves nothing."""
    server = tuco(**secured(tmp_path))
    with server.client() as http:
        assert http.get("/v1/snapshot").status_code == 401
        reader = http.post("/v1/tokens", json={"grants": [{"prefix": "", "permission": "read"}]}, headers=ADMIN)
        assert http.get("/v1/snapshot", headers=bearer(reader.json()["token"])).status_code == 403
        head = http.head("/v1/snapshot", headers=ADMIN)
        assert head.status_code == 200
        assert head.headers["content-type"] == "application/vnd.tuco.snapshot"
    done = cli("snapshot", "save", str(tmp_path / "x.snap"), "--url", server.url, "--token", reader.json()["token"])
    assert done.returncode == 6
    assert "403 forbidden" in done.stderr
    assert not (tmp_path / "x.snap").exists() and not (tmp_path / "x.snap.part").exists()


@pytest.mark.postgres
@pytest.mark.xdist_group("heavy")
def test_a_read_through_replica_snapshots_one_database_snapshot_under_16_writers(
    tuco: StartTuco, tmp_path: Path, pg_dsn: str
) -> None:
    """TUCO_STATE=cache reads the state in one repeatable-read transaction: it equals the listing at its revision."""
    env = secured(tmp_path, TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    full = tuco(data_dir=tmp_path / "a", **env)
    cached = tuco(data_dir=tmp_path / "b", TUCO_STATE="cache", **env)
    with full.client(headers=dict(ADMIN)) as http:
        for n in range(3000):
            assert http.put(key_path(f"w/{n:03d}"), content=b"%04d" % n * 512).status_code == 201
        lease = http.post("/v1/leases", json={"ttl": 3600}).json()["id"]
        assert http.put(key_path("leased"), params={"lease": lease}, content=b"L").status_code == 201
    stop = threading.Event()
    threads = writers(full, stop)
    path = tmp_path / "cached.snap"
    try:
        with (
            cached.client() as http,
            http.stream("GET", "/v1/snapshot", headers=ADMIN) as stream,
            path.open("wb") as out,
        ):
            assert stream.status_code == 200
            for chunk in stream.iter_raw(64 << 10):
                out.write(chunk)
                time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    summary, keys, leases, tokens = records(path)
    assert int(stream.headers["x-tuco-revision"]) == summary.revision
    assert [lease_record.id for lease_record in leases] == [lease]
    assert len(tokens) == 0  # the bootstrap token lives in the settings, not the log
    with full.client() as http:
        assert as_listed(keys) == listing_at(http, summary.revision)
    with cached.client() as http:
        head = http.head("/v1/snapshot", headers=ADMIN)
        assert head.status_code == 200
        assert int(head.headers["x-tuco-revision"]) > summary.revision


def test_a_snapshot_past_its_bound_is_abandoned_and_its_stream_is_refused_as_truncated(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """Over TUCO_SNAPSHOT_MAX_BYTES of before images the stream ends without its trailer, which the decoder refuses."""
    from tuco.errors import SnapshotFormatError

    server = tuco(TUCO_SNAPSHOT_MAX_BYTES=str(1 << 20))
    big = b"x" * (64 << 10)
    with server.client() as http:
        for n in range(500):
            assert http.put(key_path(f"big/{n:03d}"), content=big).status_code == 201
        decoder = SnapshotDecoder()
        with http.stream("GET", "/v1/snapshot") as stream:
            chunks = stream.iter_raw(64 << 10)
            decoder.feed(next(chunks))  # the walk is under way, paced by this reader
            with httpx.Client(base_url=server.url) as writer:
                for n in range(40):  # 40 before images of 64 KiB: past the 1 MiB bound
                    assert writer.put(key_path(f"big/{n * 12:03d}"), content=b"y").status_code == 201
            for chunk in chunks:
                decoder.feed(chunk)
        with pytest.raises(SnapshotFormatError, match="truncated: it ends at offset"):
            decoder.finish()
        abandoned = server.wait_for("snapshot_abandoned", timeout=10)
        assert "more than 1048576 bytes of keys changed while it ran" in abandoned["reason"]
        assert http.get("/v1/snapshot").status_code == 200  # the next one, without writes, is whole


def test_save_keeps_nothing_of_a_snapshot_the_server_abandoned(tuco: StartTuco, tmp_path: Path) -> None:
    """tuco snapshot save, paused mid-stream while writes pass the bound: exit 1, no FILE and no FILE.part."""
    import signal

    server = tuco(TUCO_SNAPSHOT_MAX_BYTES=str(1 << 20))
    with server.client() as http:
        for n in range(500):
            assert http.put(key_path(f"big/{n:03d}"), content=b"x" * (64 << 10)).status_code == 201
    path = tmp_path / "abandoned.snap"
    part = tmp_path / "abandoned.snap.part"
    command = [sys.executable, "-m", "tuco", "snapshot", "save", str(path), "--url", server.url]
    saving = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 0):
        assert saving.poll() is None, "the save ended before it could be paused"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    os.kill(saving.pid, signal.SIGSTOP)  # a reader that stalls: the server's walk waits for it
    try:
        with server.client() as http:
            for n in range(40):
                assert http.put(key_path(f"big/{n * 12:03d}"), content=b"y").status_code == 201
    finally:
        os.kill(saving.pid, signal.SIGCONT)
    out, err = saving.communicate(timeout=60)
    assert saving.returncode == 1
    assert out == ""
    assert f"tuco: the snapshot from {server.url} is not whole (truncated: it ends at offset" in err
    assert err.endswith("; nothing saved\n")
    assert not path.exists() and not part.exists()
