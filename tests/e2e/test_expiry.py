"""Expiring keys and leases against the real server: the lag, reads racing the deadline, restarts, compaction.

Deadlines are absolute Unix milliseconds; the server and the test share this machine's
clock (on PostgreSQL the database's, on the same machine too), so "after the deadline" is
measured on the same clock the server decided by.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]
LAGS: dict[str, list[float]] = {}  # backend -> measured lags (s), printed by the lag test


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def expiry_rounds(client: httpx.Client) -> int:
    """The server's finished expirer rounds, from /metrics."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("tuco_expiry_rounds_total "):
            return int(float(line.split()[1]))
    raise AssertionError("no tuco_expiry_rounds_total in /metrics")


def wait_for_expirer_rounds(client: httpx.Client, rounds: int = 2, timeout: float = 30.0) -> None:
    """Until the expirer finished ``rounds`` more rounds (one began after the call): what it would do, it did."""
    target = expiry_rounds(client) + rounds
    deadline = time.monotonic() + timeout
    while expiry_rounds(client) < target:
        assert time.monotonic() < deadline, f"the expirer did not finish {rounds} rounds within {timeout} s"
        time.sleep(0.02)


def _tuco(*args: str, url: str = "") -> subprocess.CompletedProcess[str]:
    env = {"TUCO_URL": url} if url else {}
    import os

    return subprocess.run(
        [sys.executable, "-m", "tuco", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_keys_are_gone_within_a_second_of_their_deadline(tuco: StartTuco, backend: dict[str, str]) -> None:
    """40 keys with a 1 s ttl: from each deadline to its first 404 takes under 1 s (median and max reported)."""
    server = tuco(**backend)
    keys = [f"lag/{n}" for n in range(40)]
    deadlines: dict[str, int] = {}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for key in keys:
            put = client.put(key_path(key), params={"ttl": "1s"}, content=b"v")
            assert put.status_code == 201
            deadlines[key] = int(put.headers["x-tuco-expires-at"])
        # The database's clock decides on PostgreSQL: the deadline it set is within a second of ours.
        assert all(abs(deadline - (now_ms() + 1000)) < 1500 for deadline in deadlines.values())
        gone_at: dict[str, int] = {}
        while len(gone_at) < len(keys) and now_ms() < max(deadlines.values()) + 5000:
            for key in keys:
                if key in gone_at:
                    continue
                sent = now_ms()
                response = client.get(key_path(key))
                if response.status_code == 404:
                    gone_at[key] = max(sent, deadlines[key])
                else:
                    assert response.status_code == 200
                    assert sent < deadlines[key] + 5, f"{key} was served {sent - deadlines[key]} ms after its deadline"
            time.sleep(0.01)
    # Gone from reads at the deadline (masking); the DELETE follows within the expirer's lag.
    lags = [(gone_at[key] - deadlines[key]) / 1000 for key in keys]
    assert len(gone_at) == len(keys)
    assert max(lags) < 1.0
    with httpx.Client(base_url=server.url, timeout=10) as client:
        written: list[float] = []
        for key in keys:
            # Deadline to DELETE logged: the key's revision in a listing at the revision after the DELETEs.
            assert client.get(key_path(key)).status_code == 404
        # Reads hid the keys at their deadlines; their DELETEs are written by the expirer just after, which
        # on a loaded machine can trail the last 404 by a moment: wait for them (bounded), then count exactly.
        written_by = time.monotonic() + 5
        listing = client.get("/v1/keys", params={"prefix": "lag/"}).json()
        while listing["revision"] < 2 * len(keys) and time.monotonic() < written_by:
            time.sleep(0.05)
            listing = client.get("/v1/keys", params={"prefix": "lag/"}).json()
        assert listing["items"] == []
        revision = listing["revision"]
        wait_for_expirer_rounds(client, 4)  # nothing more comes: no key is deleted twice
        assert client.get("/v1/keys", params={"prefix": "lag/"}).json()["revision"] == revision
        assert revision == 2 * len(keys)  # 40 PUTs, then exactly 40 expiry DELETEs
        written.append(revision)
    LAGS.setdefault(backend.get("TUCO_LOG_BACKEND", "file"), []).extend(lags)
    print(
        f"\nexpiry lag ({backend.get('TUCO_LOG_BACKEND', 'file')}): median {statistics.median(lags) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms over {len(lags)} keys"
    )


def test_deletes_are_logged_within_a_second_of_the_deadline(tuco: StartTuco, backend: dict[str, str]) -> None:
    """The expirer writes each key's DELETE within 1 s of its deadline: the revision moves by one per key."""
    server = tuco(**backend)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        deadlines = []
        for n in range(20):
            put = client.put(key_path(f"d/{n}"), params={"ttl": "700ms"}, content=b"v")
            deadlines.append(int(put.headers["x-tuco-expires-at"]))
        logged_at = None
        while now_ms() < max(deadlines) + 3000:
            revision = int(client.get("/v1/keys", params={"prefix": "d/", "limit": "1"}).headers["x-tuco-revision"])
            if revision == 40:
                logged_at = now_ms()
                break
            time.sleep(0.01)
        assert logged_at is not None, "the 20 DELETEs were not all logged within 3 s of the last deadline"
        lag = (logged_at - max(deadlines)) / 1000
        print(f"\ndelete-logged lag ({backend.get('TUCO_LOG_BACKEND', 'file')}): {lag * 1000:.0f} ms (last of 20)")
        assert lag < 1.0


def test_a_reader_hammering_across_the_deadline_never_sees_the_value_after_it(
    tuco: StartTuco, backend: dict[str, str]
) -> None:
    """Four readers GET one key from before to after its deadline: no request sent after it answers 200."""
    server = tuco(**backend)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        deadline = int(client.put(key_path("hot"), params={"ttl": "800ms"}, content=b"v").headers["x-tuco-expires-at"])
    late_hits: list[int] = []
    seen = {"200": 0, "404": 0}
    lock = threading.Lock()

    def read() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as reader:
            while now_ms() < deadline + 700:
                sent = now_ms()
                response = reader.get(key_path("hot"))
                with lock:
                    seen[str(response.status_code)] += 1
                    if response.status_code == 200 and sent > deadline:
                        late_hits.append(sent - deadline)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert late_hits == []
    assert seen["200"] > 0 and seen["404"] > 0  # the readers did straddle the deadline


def test_expiry_holds_across_a_kill_and_a_restart(tuco: StartTuco, tmp_path: Path) -> None:
    """SIGKILL, wait past one deadline, restart: that key is gone, its DELETE logged once; the other expires on time."""
    server = tuco()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        soon = int(client.put(key_path("soon"), params={"ttl": "1s"}, content=b"a").headers["x-tuco-expires-at"])
        # "later" must outlive the kill and the restart (seconds on a loaded machine); "soon" must not.
        later = int(client.put(key_path("later"), params={"ttl": "10s"}, content=b"b").headers["x-tuco-expires-at"])
    server.kill()
    time.sleep(max(0, soon + 300 - now_ms()) / 1000)
    again = tuco()
    with httpx.Client(base_url=again.url, timeout=10) as client:
        assert client.get(key_path("soon")).status_code == 404
        got = client.get(key_path("later"))
        assert (got.status_code, got.headers["x-tuco-expires-at"]) == (200, str(later))
        while now_ms() < later + 3000 and client.get(key_path("later")).status_code == 200:
            assert now_ms() < later + 5, "served after its deadline"
            time.sleep(0.01)
        gone = now_ms()
        assert gone - later < 1000
        wait_for_expirer_rounds(client)  # a round that began after the deadline wrote its DELETE
    again.terminate()
    dump = _tuco("log", "dump", str(tmp_path / "data" / "tuco.log"))
    assert dump.returncode == 0, dump.stderr
    lines = [line.split("\t")[:3] for line in dump.stdout.splitlines()]
    assert lines == [
        ["1", "PUT", "'soon'"],
        ["2", "PUT", "'later'"],
        ["3", "DELETE", "'soon'"],
        ["4", "DELETE", "'later'"],
    ]
    assert f"deadline={soon}" in dump.stdout.splitlines()[0]


def test_the_cli_grants_keeps_alive_and_revokes_and_its_exit_codes(tuco: StartTuco) -> None:
    """tuco lease grant prints an id; put --lease attaches; keepalive extends past the first ttl; revoke deletes."""
    server = tuco()
    url = server.url
    # 15 s: each CLI call is a new Python process, which takes up to 3 s on a loaded two-core machine.
    granted = _tuco("lease", "grant", "15s", "--json", url=url)
    assert granted.returncode == 0, granted.stderr
    answer = json.loads(granted.stdout)
    lease = str(answer["id"])
    assert (lease, answer["ttl"]) == ("1", 15.0)
    assert _tuco("put", "held", "v", "--lease", lease, url=url).returncode == 0
    while now_ms() < answer["expires_at"] + 1000:  # kept alive past the lease's first deadline
        time.sleep(0.5)
        kept = _tuco("lease", "keepalive", lease, url=url)
        assert kept.returncode == 0, kept.stderr
        assert int(kept.stdout) > now_ms() + 5000
    assert httpx.get(url + key_path("held")).content == b"v"  # not the CLI: the revoke must come while the lease lives
    revoked = _tuco("lease", "revoke", lease, url=url)
    assert (revoked.returncode, revoked.stdout) == (0, "1\n")
    assert _tuco("get", "held", url=url).returncode == 1
    missing = _tuco("lease", "keepalive", lease, url=url)
    assert missing.returncode == 1
    assert missing.stderr.startswith("tuco: 404 no_such_lease")
    assert _tuco("lease", "revoke", lease, url=url).returncode == 1
    assert _tuco("put", "k", "v", "--lease", lease, url=url).returncode == 1
    both = _tuco("put", "k", "v", "--ttl", "1s", "--lease", lease, url=url)
    assert (both.returncode, both.stderr) == (
        2,
        "tuco: --ttl and --lease exclude each other: a key expires at one deadline\n",
    )
    assert _tuco("put", "k", "v", "--ttl", "soon", url=url).returncode == 2
    assert _tuco("lease", "grant", "0", url=url).returncode == 2  # under a millisecond: a usage error
    assert _tuco("lease", "keepalive", "abc", url=url).returncode == 2
    assert _tuco("put", "ttl-key", "v", "--ttl", "30s", url=url).returncode == 0
    assert _tuco("get", "ttl-key", url=url).stdout == "v"


def test_compaction_keeps_deadlines_and_leases(tuco: StartTuco, tmp_path: Path) -> None:
    """After tuco log compact, a key keeps its deadline, a lease its keys and deadline, and both still expire."""
    server = tuco()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for n in range(50):  # history for the compaction to drop
            client.put(key_path("churn"), content=b"%d" % n)
        # 10 s deadlines outlive the stop, the compaction process and the restart even on a loaded machine.
        lease = client.post("/v1/leases", json={"ttl": 10}).json()
        client.put(key_path("leased"), params={"lease": str(lease["id"])}, content=b"l")
        ttl_deadline = int(
            client.put(key_path("ttl"), params={"ttl": "10s"}, content=b"t").headers["x-tuco-expires-at"]
        )
        client.put(key_path("plain"), content=b"p")
    server.terminate()
    compacted = _tuco("log", "compact", str(tmp_path / "data" / "tuco.log"))
    assert compacted.returncode == 0, compacted.stderr
    again = tuco()
    with httpx.Client(base_url=again.url, timeout=10) as client:
        assert client.get(key_path("ttl")).headers["x-tuco-expires-at"] == str(ttl_deadline)
        assert client.get(key_path("leased")).headers["x-tuco-expires-at"] == str(lease["expires_at"])
        shown = client.get(f"/v1/leases/{lease['id']}").json()
        assert (shown["keys"], shown["expires_at"]) == (["leased"], lease["expires_at"])
        assert "x-tuco-expires-at" not in client.get(key_path("plain")).headers
        while now_ms() < max(ttl_deadline, lease["expires_at"]) + 1000:
            time.sleep(0.05)
        assert client.get(key_path("ttl")).status_code == 404
        assert client.get(key_path("leased")).status_code == 404
        assert client.get(f"/v1/leases/{lease['id']}").status_code == 404
        assert client.get(key_path("plain")).content == b"p"
