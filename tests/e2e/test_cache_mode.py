"""A read-through replica (TUCO_STATE=cache) beside a full one on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess
from tests.fix_db import eventually, fetch
from tests.fix_proxy import Proxy

StartTuco = Callable[..., TucoProcess]

# A default read on the cache replica is behind by at most its feed's lag: NOTIFY wakes it within
# milliseconds, the poll interval (0.5 s) bounds it without. 5 s allows for a loaded 2-core machine.
FOLLOW_BOUND_SECONDS = 5.0


def _replica(tuco: StartTuco, dsn: str, name: str, **env: str) -> TucoProcess:
    return tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=dsn, TUCO_DATA_DIR=f"/nonexistent/{name}", **env)


def _cache_replica(tuco: StartTuco, dsn: str, name: str = "cache", **env: str) -> TucoProcess:
    return _replica(tuco, dsn, name, TUCO_STATE="cache", **env)


def _database_state(dsn: str) -> dict[str, tuple[bytes, int]]:
    rows = asyncio.run(fetch(dsn, "SELECT key, value, sequence FROM tuco_state"))
    return {bytes(r[0]).decode(): (bytes(r[1]), r[2]) for r in rows}


def _defaults_match(http: httpx.Client, keys: list[str], truth: dict[str, tuple[bytes, int]]) -> bool:
    """Whether a default read of every key answers what the database holds."""
    for key in keys:
        read = http.get(key_path(key))
        expected = truth.get(key)
        if expected is None and read.status_code != 404:
            return False
        if expected is not None and (read.status_code, read.content) != (200, expected[0]):
            return False
    return True


def test_cache_mode_with_the_file_log_is_refused_in_one_line(tmp_path: Path) -> None:
    """TUCO_STATE=cache without the postgres backend exits 2 with one line naming both settings."""
    result = subprocess.run(
        [sys.executable, "-m", "tuco", "serve"],
        env={"PATH": "/usr/bin:/bin", "TUCO_STATE": "cache", "TUCO_DATA_DIR": str(tmp_path), "TUCO_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "TUCO_STATE=cache needs TUCO_LOG_BACKEND=postgres" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.postgres
def test_random_workload_consistent_reads_equal_the_database(tuco: StartTuco, pg_dsn: str) -> None:
    """Puts, deletes, CAS and reads over both replicas: consistent reads on the cache replica always equal the
    database, and default reads equal it within the feed's bound, with a cache small enough to evict."""
    full = _replica(tuco, pg_dsn, "full")
    cache = _cache_replica(tuco, pg_dsn, TUCO_CACHE_MAX_BYTES="4096")
    keys = [f"k{n}" for n in range(40)]
    rng = random.Random(10)
    with full.client() as a, cache.client() as b:
        for step in range(400):
            key = rng.choice(keys)
            http = rng.choice((a, b))
            roll = rng.random()
            if roll < 0.35:
                value = bytes([rng.randrange(256)]) * rng.randrange(0, 300)
                assert http.put(key_path(key), content=value).status_code == 201
            elif roll < 0.42:
                assert http.delete(key_path(key)).status_code == 200
            elif roll < 0.47:  # a deadline moves the key out of the LRU into the store of expiring keys
                assert http.put(key_path(key), content=b"ttl %d" % step, params={"ttl": "1h"}).status_code == 201
            elif roll < 0.6:  # compare-and-swap on the revision the other replica reports
                seen = a.get(key_path(key), params={"consistent": "true"})
                if seen.status_code == 200:
                    tag = seen.headers["etag"]
                    got = http.put(key_path(key), content=b"cas %d" % step, headers={"If-Match": tag})
                    assert got.status_code in (201, 412)
                else:
                    got = http.put(key_path(key), content=b"new %d" % step, headers={"If-None-Match": "*"})
                    assert got.status_code in (201, 412)
            else:
                b.get(key_path(key))  # warm the cache with whatever is there
            # The database is the truth: a consistent read on the cache replica equals it now.
            truth = _database_state(pg_dsn).get(key)
            read = b.get(key_path(key), params={"consistent": "true"})
            if truth is None:
                assert read.status_code == 404, (step, key)
            else:
                assert (read.status_code, read.content, read.headers["etag"]) == (200, truth[0], f'"{truth[1]}"')
            if step % 100 == 99:  # default reads catch up with the database within the bound, mid-workload too
                eventually(lambda: _defaults_match(b, keys, _database_state(pg_dsn)), timeout=FOLLOW_BOUND_SECONDS)
        truth_all = _database_state(pg_dsn)
        eventually(lambda: _defaults_match(b, keys, truth_all), timeout=FOLLOW_BOUND_SECONDS, what="default reads")
        metrics = b.get("/metrics").text
        cached_bytes = float(re.search(r"^tuco_cache_bytes (\S+)$", metrics, re.M)[1])  # type: ignore[index]
        evictions = float(re.search(r"^tuco_cache_evictions_total (\S+)$", metrics, re.M)[1])  # type: ignore[index]
        assert 0 < cached_bytes <= 4096
        assert evictions > 0


@pytest.mark.postgres
def test_default_reads_follow_the_other_replicas_writes_within_the_bound(tuco: StartTuco, pg_dsn: str) -> None:
    """A key cached on the cache replica is updated, then evicted, by the full replica's writes via the feed."""
    full = _replica(tuco, pg_dsn, "full")
    cache = _cache_replica(tuco, pg_dsn)
    with full.client() as a, cache.client() as b:
        assert a.put("/v1/key/hot", content=b"one").status_code == 201
        assert b.get("/v1/key/hot").content == b"one"  # now cached
        started = time.monotonic()
        assert a.put("/v1/key/hot", content=b"two").status_code == 201
        eventually(lambda: b.get("/v1/key/hot").content == b"two", timeout=FOLLOW_BOUND_SECONDS, what="update")
        assert time.monotonic() - started < FOLLOW_BOUND_SECONDS
        assert a.delete("/v1/key/hot").status_code == 200
        eventually(lambda: b.get("/v1/key/hot").status_code == 404, timeout=FOLLOW_BOUND_SECONDS, what="eviction")


@pytest.mark.postgres
def test_start_up_reads_only_the_keys_with_a_deadline(tuco: StartTuco, pg_dsn: str) -> None:
    """A cache replica starting on 2,000 keys replays the one key with a ttl and the lease, not the rest."""
    full = _replica(tuco, pg_dsn, "full")
    with full.client() as a:
        for n in range(2000):
            assert a.put(f"/v1/key/bulk{n}", content=b"x" * 100).status_code == 201
        assert a.put("/v1/key/short", content=b"v", params={"ttl": "1h"}).status_code == 201
        assert a.post("/v1/leases", content=b'{"ttl": 3600}').status_code == 201
    cache = _cache_replica(tuco, pg_dsn)
    replayed = cache.wait_for("replay_finished")
    assert replayed["keys"] == 1
    assert replayed["events"] == 2
    with cache.client() as b:
        assert b.get("/v1/key/bulk1999").content == b"x" * 100
        short = b.get("/v1/key/short")
        assert short.status_code == 200
        assert int(short.headers["x-tuco-expires-at"]) > time.time() * 1000
    indexes = asyncio.run(fetch(pg_dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'tuco_state'"))
    assert "tuco_state_expiring" in {r[0] for r in indexes}


@pytest.mark.postgres
def test_expiring_keys_and_leases_behave_as_on_a_full_replica(tuco: StartTuco, pg_dsn: str) -> None:
    """On a cache replica alone, a ttl key expires (its DELETE written), a lease lists its keys and revoke deletes."""
    cache = _cache_replica(tuco, pg_dsn)
    with cache.client() as b:
        put = b.put("/v1/key/brief", content=b"soon", params={"ttl": "300ms"})
        assert put.status_code == 201
        assert b.get("/v1/key/brief").content == b"soon"
        eventually(lambda: b.get("/v1/key/brief").status_code == 404, timeout=5, what="expiry")
        deletes = asyncio.run(fetch(pg_dsn, "SELECT count(*) FROM tuco_events WHERE type = 2 AND key = 'brief'"))
        eventually(
            lambda: asyncio.run(fetch(pg_dsn, "SELECT count(*) FROM tuco_events WHERE type = 2"))[0][0] == 1,
            timeout=5,
            what="the expirer's DELETE",
        )
        del deletes
        lease = b.post("/v1/leases", content=b'{"ttl": 60}').json()["id"]
        assert b.put("/v1/key/held", content=b"h", params={"lease": str(lease)}).status_code == 201
        shown = b.get(f"/v1/leases/{lease}")
        assert (shown.status_code, shown.json()["keys"]) == (200, ["held"])
        assert b.get("/v1/key/held").headers["x-tuco-expires-at"] == str(shown.json()["expires_at"])
        revoked = b.delete(f"/v1/leases/{lease}")
        assert (revoked.status_code, revoked.json()["deleted_keys"]) == (200, 1)
        assert b.get("/v1/key/held").status_code == 404


@pytest.mark.postgres
def test_listing_and_watch_read_the_database(tuco: StartTuco, pg_dsn: str) -> None:
    """Listing pages on the cache replica equal the full replica's; a watch from revision 1 replays from the log."""
    full = _replica(tuco, pg_dsn, "full")
    cache = _cache_replica(tuco, pg_dsn, TUCO_CACHE_MAX_BYTES="0")
    with full.client() as a, cache.client() as b:
        for n in range(7):
            assert a.put(key_path(f"app/{n}"), content=b"%d" % n).status_code == 201
        assert a.put("/v1/key/other", content=b"o").status_code == 201
        assert a.put(key_path("app/gone"), content=b"g", params={"ttl": "1ms"}).status_code == 201
        time.sleep(0.05)
        b.get("/v1/key/other", params={"consistent": "true"})  # the cache replica has seen the head
        first = b.get("/v1/keys", params={"prefix": "app/", "limit": "3"})
        assert first.status_code == 200
        body = first.json()
        assert [item["key"] for item in body["items"]] == ["app/0", "app/1", "app/2"]
        expected = a.get("/v1/keys", params={"prefix": "app/", "limit": "3"}).json()
        assert body["items"] == expected["items"]
        second = b.get("/v1/keys", params={"prefix": "app/", "limit": "10", "page_token": body["next_page_token"]})
        assert [item["key"] for item in second.json()["items"]] == ["app/3", "app/4", "app/5", "app/6"]
        assert second.json()["next_page_token"] is None
        # A key of the rest of the listing changed after the token's revision: 410, from the head on.
        token = b.get("/v1/keys", params={"prefix": "app/", "limit": "1"}).json()["next_page_token"]
        assert a.put(key_path("app/5"), content=b"moved").status_code == 201
        b.get("/v1/key/other", params={"consistent": "true"})
        stale = b.get("/v1/keys", params={"prefix": "app/", "page_token": token})
        assert stale.status_code == 410
        assert stale.json()["error"] == "history_compacted"
        with b.stream("GET", "/v1/watch", params={"prefix": "app/", "start_revision": "1"}) as stream:
            seen: list[str] = []
            for line in stream.iter_lines():
                if line.startswith("data:") and '"key"' in line:
                    seen.append(line)
                if len(seen) >= 10:
                    break
        # Seven puts, the ttl key's put and its expiry's delete, the rewrite of app/5: all from the log.
        assert ['"key":"app/0"' in seen[0], '"key":"app/gone"' in seen[7], '"key":"app/5"' in seen[9]] == [True] * 3


@pytest.mark.postgres
@pytest.mark.parametrize("consistent", [True, False])
def test_reads_answer_503_while_the_database_is_away(tuco: StartTuco, pg_proxy: Proxy, consistent: bool) -> None:
    """With the database away, a miss (or a consistent read) is a JSON 503, never a 500; a cached key still answers."""
    cache = _replica(tuco, pg_proxy.dsn, "cache", TUCO_STATE="cache", TUCO_DATABASE_WRITE_TIMEOUT_SECONDS="1")
    with cache.client() as b:
        assert b.put("/v1/key/kept", content=b"k").status_code == 201
        assert b.get("/v1/key/kept").status_code == 200
        pg_proxy.stop()
        params = {"consistent": "true"} if consistent else None
        missing = b.get("/v1/key/never-cached", params=params)
        assert missing.status_code == 503
        assert missing.headers["content-type"] == "application/json"
        assert missing.json()["error"] == "log_unavailable"
        listing = b.get("/v1/keys")
        assert (listing.status_code, listing.json()["error"]) == (503, "log_unavailable")
        kept = b.get("/v1/key/kept", params=params)
        assert kept.status_code == (503 if consistent else 200)
        pg_proxy.start()
        eventually(lambda: b.get("/v1/key/never-cached", params=params).status_code == 404, timeout=10, what="back")


@pytest.mark.postgres
def test_transactions_update_and_evict_the_cache_replicas_keys(tuco: StartTuco, pg_dsn: str) -> None:
    """A transaction on the full replica updates one cached key and deletes another on the cache replica."""
    full = _replica(tuco, pg_dsn, "full")
    cache = _cache_replica(tuco, pg_dsn)
    with full.client() as a, cache.client() as b:
        for key in ("x", "y"):
            assert a.put(f"/v1/key/{key}", content=b"one").status_code == 201
            assert b.get(f"/v1/key/{key}").content == b"one"  # now cached
        body = {"success": [{"put": {"key": "x", "value": "dHdv"}}, {"delete": {"key": "y"}}]}
        assert a.post("/v1/txn", json=body).json()["revision"] == 3
        eventually(lambda: b.get("/v1/key/x").content == b"two", timeout=FOLLOW_BOUND_SECONDS, what="update")
        eventually(lambda: b.get("/v1/key/y").status_code == 404, timeout=FOLLOW_BOUND_SECONDS, what="eviction")
        assert b.get("/v1/key/x").headers["etag"] == '"3"'
        through = b.post("/v1/txn", json={"success": [{"put": {"key": "z", "value": "eg=="}, "ttl": 60}]})
        assert through.status_code == 400  # ttl belongs inside the put
        ttl = {"success": [{"put": {"key": "z", "value": "eg==", "ttl": 60}}]}
        assert b.post("/v1/txn", json=ttl).json()["revision"] == 4
        assert b.get("/v1/key/z").headers["x-tuco-expires-at"].isdigit()
