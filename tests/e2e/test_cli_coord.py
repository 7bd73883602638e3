"""tuco lock, elect, wait, watch --key, lease show, global options and JSON errors, run as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.process import TucoProcess
from tests.fix_db import eventually
from tuco.client import Client

StartTuco = Callable[..., TucoProcess]

TUCO = [sys.executable, "-m", "tuco"]


def _tuco(*args: str, url: str = "") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TUCO_URL": url} if url else {k: v for k, v in os.environ.items() if k != "TUCO_URL"}
    return subprocess.run([*TUCO, *args], env=env, capture_output=True, timeout=60, check=False)


def _keys(url: str, prefix: str) -> list[str]:
    with Client(url) as client:
        return [item.key for item in client.scan(prefix, keys_only=True)]


def test_lock_runs_the_command_with_the_token_and_exits_with_its_status(tuco: StartTuco) -> None:
    """The command sees TUCO_FENCING_TOKEN, tuco exits with its status, and the lock is free afterwards."""
    server = tuco()
    script = 'echo "token=$TUCO_FENCING_TOKEN"; exit 3'
    first = _tuco("lock", "locks/cron", "--", "sh", "-c", script, url=server.url)
    assert first.returncode == 3, first.stderr
    token = int(first.stdout.decode().removeprefix("token=").strip())
    second = _tuco("lock", "locks/cron", "--", "sh", "-c", script, url=server.url)
    assert second.returncode == 3
    assert int(second.stdout.decode().removeprefix("token=").strip()) > token
    assert _keys(server.url, "locks/cron/") == []
    missing = _tuco("lock", "locks/cron", "--", "/nonexistent/program", url=server.url)
    assert missing.returncode == 127 and b"cannot run '/nonexistent/program'" in missing.stderr
    assert _keys(server.url, "locks/cron/") == []


def test_a_held_lock_makes_another_tuco_lock_time_out_and_sigterm_releases_it(tuco: StartTuco, tmp_path: Path) -> None:
    """A second tuco lock gives up with exit 9, a third leaves the queue on SIGTERM; SIGTERM reaches the command."""
    server = tuco()
    started = tmp_path / "started"
    env = {**os.environ, "TUCO_URL": server.url}
    with subprocess.Popen(
        [*TUCO, "lock", "locks/long", "--", "sh", "-c", f"touch {started}; sleep 60"],
        env=env,
        stderr=subprocess.DEVNULL,
    ) as holder:
        try:
            eventually(started.exists, what="the command started")
            late = _tuco("--url", server.url, "lock", "locks/long", "--timeout", "0.5", "--", "true")
            assert late.returncode == 9
            assert b"not acquired within 0.5s: another session holds it" in late.stderr
            assert len(_keys(server.url, "locks/long/")) == 1
            with subprocess.Popen([*TUCO, "lock", "locks/long", "--", "true"], env=env) as waiter:
                eventually(lambda: len(_keys(server.url, "locks/long/")) == 2, what="the waiter queues")
                waiter.send_signal(signal.SIGTERM)  # while waiting: it leaves the queue, it does not linger a ttl
                assert waiter.wait(30) == 128 + signal.SIGTERM
            assert len(_keys(server.url, "locks/long/")) == 1
            holder.send_signal(signal.SIGTERM)
            assert holder.wait(30) == 128 + signal.SIGTERM
        finally:
            holder.kill()
    assert _keys(server.url, "locks/long/") == []
    assert _tuco("lock", "locks/long", "--timeout", "5s", "--", "true", url=server.url).returncode == 0


def test_elect_runs_the_leader_and_announces_its_value(tuco: StartTuco) -> None:
    """tuco elect --value V: the command leads with a token, the queue shows V while it runs."""
    server = tuco()
    shown = _tuco(
        "elect",
        "el/web",
        "--value",
        "node-a",
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        'echo "$TUCO_FENCING_TOKEN"; tuco_list=$(' + " ".join(TUCO) + ' list el/web/); echo "$tuco_list"',
        url=server.url,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.decode().splitlines()
    announced = json.loads(lines[0])
    assert announced["election"] == "el/web" and lines[1] == str(announced["token"])
    assert lines[2] == f"{announced['key']}\tnode-a"
    assert _keys(server.url, "el/web/") == []


def test_wait_prints_the_change_or_times_out(tuco: StartTuco) -> None:
    """tuco wait KEY --revision N prints the new value; a delete exits 1; nothing by the timeout exits 9."""
    server = tuco()
    revision = int(_tuco("put", "cfg", "v1", url=server.url).stdout)
    assert _tuco("put", "cfg", "v2", url=server.url).stdout == f"{revision + 1}\n".encode()
    changed = _tuco("wait", "cfg", "--revision", str(revision + 1), url=server.url)
    assert (changed.returncode, changed.stdout) == (0, b"v2")
    quiet = _tuco("wait", "cfg", "--revision", str(revision + 2), "--timeout", "300ms", url=server.url)
    assert quiet.returncode == 9
    _tuco("delete", "cfg", url=server.url)
    gone = _tuco("wait", "cfg", "--revision", str(revision + 2), "-o", "json", url=server.url)
    assert (gone.returncode, json.loads(gone.stdout)) == (1, {"key": "cfg", "deleted": True})


def test_watch_key_prints_only_that_key(tuco: StartTuco) -> None:
    """tuco watch --key K shows K's changes and not those of keys it is a prefix of."""
    server = tuco()
    env = {**os.environ, "TUCO_URL": server.url}
    with subprocess.Popen([*TUCO, "watch", "--key", "k"], env=env, stdout=subprocess.PIPE) as watcher:
        assert watcher.stdout is not None
        try:
            time.sleep(1.0)  # the stream opens "from now"; a change before it would not be shown
            with Client(server.url) as client:
                client.put("k2", "no")
                revision = client.put("k", "yes").revision
                client.delete("k")
            assert watcher.stdout.readline() == f"{revision}\tput\tk\tyes\n".encode()
            assert watcher.stdout.readline() == f"{revision + 1}\tdelete\tk\n".encode()
        finally:
            watcher.terminate()
            watcher.wait(10)
    both = _tuco("watch", "p", "--key", "k", url=server.url)
    assert both.returncode == 2 and b"not both" in both.stderr


def test_global_options_go_before_or_after_and_json_errors(tuco: StartTuco) -> None:
    """--url and -o work before or after the command; put prints the revision; -o json errors are JSON."""
    server = tuco()
    before = _tuco("--url", server.url, "-o", "json", "put", "g", "1")
    after = _tuco("put", "g", "2", "--url", server.url, "-o", "json")
    plain = _tuco("--url", server.url, "put", "g", "3")
    assert json.loads(before.stdout)["revision"] + 1 == json.loads(after.stdout)["revision"]
    assert plain.stdout == f"{json.loads(after.stdout)['revision'] + 1}\n".encode()
    missing = _tuco("-o", "json", "--url", server.url, "get", "nope")
    assert missing.returncode == 1
    assert json.loads(missing.stderr) == {"error": "no_such_key", "status": 404, "message": "no such key: 'nope'"}
    taken = _tuco("--url", server.url, "put", "g", "x", "--create-only", "-o", "json")
    assert taken.returncode == 4
    assert json.loads(taken.stderr)["error"] == "precondition_failed"
    assert json.loads(taken.stderr)["current_revision"] == json.loads(after.stdout)["revision"] + 1
    down = _tuco("-o", "json", "get", "g", url="http://127.0.0.1:1")
    assert down.returncode == 3 and json.loads(down.stderr)["error"] == "server_unreachable"
    overridden = _tuco("--url", "http://127.0.0.1:1", "get", "g", "--url", server.url)
    assert (overridden.returncode, overridden.stdout) == (0, b"3")


def test_lease_show_prints_the_lease_and_its_keys(tuco: StartTuco) -> None:
    """tuco lease show ID: ttl, end and time left, then its keys; a lease that ended exits 1."""
    server = tuco()
    with Client(server.url) as client:
        lease = client.grant(60)
        client.put("held/a", "1", lease=lease.id)
        client.put("held/b", "2", lease=lease.id)
    shown = _tuco("lease", "show", str(lease.id), url=server.url)
    head, *keys = shown.stdout.decode().splitlines()
    assert head.split("\t")[:3] == [str(lease.id), "60", str(lease.expires_at)]
    assert 0 < float(head.split("\t")[3]) <= 60
    assert keys == ["held/a", "held/b"]
    as_json = json.loads(_tuco("lease", "show", str(lease.id), "-o", "json", url=server.url).stdout)
    assert (as_json["id"], as_json["keys"]) == (lease.id, ["held/a", "held/b"])
    _tuco("lease", "revoke", str(lease.id), url=server.url)
    assert _tuco("lease", "show", str(lease.id), url=server.url).returncode == 1


def test_touch_persist_and_ttl_change_and_show_a_deadline(tuco: StartTuco) -> None:
    """tuco touch sets a deadline keeping the value, tuco ttl shows the seconds left, persist removes it."""
    server = tuco()
    revision = int(_tuco("put", "session", "token", url=server.url).stdout)
    assert _tuco("ttl", "session", url=server.url).stdout == b"none\n"
    touched = _tuco("touch", "session", "1h", url=server.url)
    assert (touched.returncode, touched.stdout) == (0, f"{revision + 1}\n".encode())
    left = float(_tuco("ttl", "session", url=server.url).stdout)
    assert 3500 < left <= 3600
    assert _tuco("get", "session", url=server.url).stdout == b"token"
    shown = json.loads(_tuco("persist", "session", "-o", "json", url=server.url).stdout)
    assert shown == {"key": "session", "revision": revision + 2, "expires_at": None}
    assert _tuco("ttl", "session", url=server.url).stdout == b"none\n"
    assert _tuco("touch", "absent", "5s", url=server.url).returncode == 1
    assert _tuco("touch", "session", "soon", url=server.url).returncode == 2


def test_a_paused_tuco_lock_learns_it_lost_stops_the_command_and_exits_10(tuco: StartTuco, tmp_path: Path) -> None:
    """SIGSTOP tuco lock past its ttl: another tuco lock takes over; on SIGCONT the first stops its command, exit 10."""
    server = tuco()
    started = tmp_path / "started"
    env = {**os.environ, "TUCO_URL": server.url}
    with subprocess.Popen(
        [*TUCO, "lock", "locks/p", "--ttl", "1s", "--", "sh", "-c", f"touch {started}; exec sleep 60"],
        env=env,
        stderr=subprocess.PIPE,
    ) as holder:
        try:
            eventually(started.exists, what="the command started")
            holder.send_signal(signal.SIGSTOP)
            try:
                second = _tuco("lock", "locks/p", "--timeout", "30s", "--", "true", url=server.url)
                assert second.returncode == 0, second.stderr  # the paused holder's lease ended: the lock was free
            finally:
                holder.send_signal(signal.SIGCONT)
            assert holder.wait(30) == 10
            assert holder.stderr is not None and b"lost the lock" in holder.stderr.read()
        finally:
            holder.kill()
