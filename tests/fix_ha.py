"""A PostgreSQL primary with a synchronous standby of its own, for failover tests.

Two node slots with fixed ports, so one multi-host URL names the cluster for
its whole life, as a managed service's or Patroni's node addresses do. Each
node is an ``initdb`` or ``pg_basebackup`` in a temporary folder owned by the
``postgres`` user, listening on loopback only; the machine's own cluster is
never touched. A failover SIGKILLs the primary's postmaster and every backend
(the machine is gone), promotes the standby and rebuilds the lost slot as the
new synchronous standby.

Promotion is done the way Patroni's (non-strict) synchronous mode does it: the
standby is promoted with ``synchronous_standby_names`` cleared, so writes go on
while the new standby is built, and synchronous replication is switched back
on as soon as that standby streams. Everything is stopped and removed on
``close()``, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import asyncpg
import httpx
import pytest

from tests.lincheck import History
from tests.needs import postgres_marked, unavailable

__all__ = ["Burst", "FailoverReport", "HaCluster", "Node", "check_database", "drive_failovers", "ha_cluster"]

PG_BIN = Path(os.environ.get("TUCO_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
_OWNER = "postgres"
_CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
wal_level = replica
max_wal_senders = 5
max_connections = 60
shared_buffers = 16MB
synchronous_standby_names = '*'
synchronous_commit = on
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 200ms
logging_collector = off
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    """One slot of the cluster: a fixed port and the data folder that currently serves it."""

    name: str
    port: int
    data: Path

    def postmaster_pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, or None when the node is not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None


def _unavailable(reason: str) -> NoReturn:
    """Fail under ``CI=true`` (skip otherwise, like the database fixture) when the rig cannot run here."""
    unavailable(reason)


class HaCluster:
    """A primary and a synchronous standby on free loopback ports, in a temporary folder."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            _unavailable(f"no PostgreSQL binaries in {PG_BIN} (set TUCO_TEST_PG_BIN)")
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            self._as_owner = ["runuser", "-u", _OWNER, "--"]
            owner = pwd.getpwnam(_OWNER)
        elif pwd.getpwuid(os.geteuid()).pw_name != _OWNER:
            _unavailable("the failover rig runs PostgreSQL as root (through runuser) or as the postgres user")
        self.root = Path(tempfile.mkdtemp(prefix="tuco-ha-"))
        if self._as_owner:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.nodes = [Node("a", _free_port(), self.root / "a-0"), Node("b", _free_port(), self.root / "b-0")]
        self._primary = 0
        self._generation = 0
        self.failovers = 0

    # -- naming ---------------------------------------------------------------

    @property
    def primary(self) -> Node:
        return self.nodes[self._primary]

    @property
    def standby(self) -> Node:
        return self.nodes[1 - self._primary]

    def url(self, database: str = "postgres", *, query: str = "target_session_attrs=read-write") -> str:
        """The multi-host URL of the cluster: both slots, whichever is the primary now."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql://{_OWNER}@{hosts}/{database}" + (f"?{query}" if query else "")

    def node_url(self, node: Node, database: str = "postgres") -> str:
        """The single-host URL of one node."""
        return f"postgresql://{_OWNER}@127.0.0.1:{node.port}/{database}"

    # -- life -----------------------------------------------------------------

    def start(self) -> HaCluster:
        """initdb the primary, start it, build and start the synchronous standby."""
        node = self.primary
        self._run("initdb", "-D", str(node.data), "-A", "trust", "-U", _OWNER, "--no-sync", "-E", "UTF8")
        self._write_conf(node)
        with (node.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")
        self._pg_ctl(node, "start")
        self._build_standby(self.standby)
        return self

    def create_database(self, name: str) -> str:
        """Create a database on the primary; return the cluster's multi-host URL of it."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, statement: str, *, node: Node | None = None, database: str = "postgres") -> None:
        """Run one statement on a node (the primary by default)."""
        self._psql(node or self.primary, statement, database=database)

    def query(self, statement: str, *, node: Node | None = None, database: str = "postgres") -> str:
        """One value, as text, from a node (the primary by default)."""
        return self._psql(node or self.primary, statement, database=database).strip()

    def kill_primary(self) -> float:
        """SIGKILL the primary's postmaster and all its backends at once; return when (monotonic)."""
        node = self.primary
        pid = node.postmaster_pid()
        if pid is None:
            raise AssertionError(f"the primary {node.name} is not running")
        children = _children_of(pid)
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        killed = time.monotonic()
        _wait_gone([pid, *children])
        return killed

    def promote(self) -> float:
        """Promote the standby (synchronous replication off until a new standby streams); return when done."""
        node = self.standby
        with (node.data / "postgresql.auto.conf").open("a") as conf:  # read last: it wins
            conf.write("synchronous_standby_names = ''\n")
        self._pg_ctl(node, "reload")
        self._pg_ctl(node, "promote")
        self._primary = 1 - self._primary
        promoted = time.monotonic()
        self.failovers += 1
        return promoted

    def rebuild_standby(self) -> None:
        """Build the lost slot anew from the primary, start it, and switch synchronous replication back on."""
        lost = self.standby
        shutil.rmtree(lost.data, ignore_errors=True)
        self._generation += 1
        lost.data = self.root / f"{lost.name}-{self._generation}"
        self._build_standby(lost)

    def failover(self) -> tuple[float, float]:
        """Kill the primary, promote the standby, rebuild a standby; return (killed, promoted) times."""
        killed = self.kill_primary()
        promoted = self.promote()
        self.rebuild_standby()
        return killed, promoted

    def stop_node(self, node: Node) -> None:
        """Stop one node cleanly (``pg_ctl stop -m fast``)."""
        self._pg_ctl(node, "stop", "-m", "fast")

    def start_node(self, node: Node) -> None:
        """Start a stopped node again."""
        self._pg_ctl(node, "start")

    def make_asynchronous(self) -> None:
        """Turn synchronous replication off: the primary acknowledges commits its standby may not have."""
        self.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
        self.execute("SELECT pg_reload_conf()")

    def make_read_only(self, node: Node) -> None:
        """Make a running node refuse writes (``default_transaction_read_only``), as a demoted node does."""
        self.execute("ALTER SYSTEM SET default_transaction_read_only = on", node=node)
        self.execute("SELECT pg_reload_conf()", node=node)

    def close(self) -> None:
        """Stop every node (immediately) and remove the folder; never raises."""
        for node in self.nodes:
            pid = node.postmaster_pid()
            if pid is None:
                continue
            with contextlib.suppress(Exception):
                self._pg_ctl(node, "stop", "-m", "immediate", timeout=20)
            if node.postmaster_pid() is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers --------------------------------------------------------------

    def _build_standby(self, node: Node) -> None:
        source = self.primary
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(source.port),
            "-U",
            _OWNER,
            "-D",
            str(node.data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )
        self._write_conf(node)
        self._pg_ctl(node, "start")
        self.wait_synchronous()
        if self.query("SHOW synchronous_standby_names") != "*":
            self.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            self.execute("SELECT pg_reload_conf()")
        self.wait_synchronous(state="sync")

    def wait_synchronous(self, *, state: str = "", timeout: float = 30.0) -> None:
        """Wait until the primary sees a streaming standby (in ``state``, e.g. ``sync``, if given)."""
        wanted = f" AND sync_state = '{state}'" if state else ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.query(f"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'{wanted}")
            if found == "1":
                return
            time.sleep(0.05)
        raise AssertionError(f"no {state or 'streaming'} standby on {self.primary.name} within {timeout} s")

    def _write_conf(self, node: Node) -> None:
        sockets = self.root / f"{node.data.name}.sockets"  # outside the data: a base backup would copy its locks
        sockets.mkdir(exist_ok=True)
        if self._as_owner:
            owner = pwd.getpwnam(_OWNER)
            os.chown(sockets, owner.pw_uid, owner.pw_gid)
        conf = node.data / "postgresql.conf"
        text = conf.read_text()
        # A base backup copies the primary's settings; the last line of a setting wins.
        conf.write_text(text + _CONF.format(port=node.port, sockets=sockets))

    def _pg_ctl(self, node: Node, action: str, *extra: str, timeout: float = 60) -> None:
        log = self.root / f"{node.name}.log"
        args = ["-D", str(node.data), "-l", str(log), "-w", "-t", str(int(timeout)), action, *extra]
        if action == "reload":
            args = ["-D", str(node.data), action]
        try:
            self._run("pg_ctl", *args, timeout=timeout + 5)
        except AssertionError as exc:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"{exc}\n{node.name}.log:\n{tail}") from None

    def _psql(self, node: Node, statement: str, *, database: str) -> str:
        return self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(node.port),
            "-U",
            _OWNER,
            "-d",
            database,
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        )

    def _run(self, program: str, *args: str, timeout: float = 60) -> str:
        command = [*self._as_owner, str(PG_BIN / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{program} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            state = (Path(f"/proc/{pid}/stat").read_text(errors="replace").rpartition(")")[2].split() or ["?"])[0]
            if state == "Z":  # a zombie: dead, waiting for its (former) parent to reap it
                break
            time.sleep(0.005)


async def read_only_error_on(url: str) -> str:
    """The SQLSTATE a write gets on ``url`` ('' if it succeeds): used to check a node refuses writes."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("CREATE TEMP TABLE tuco_probe (x int); INSERT INTO tuco_probe VALUES (1)")
    except asyncpg.PostgresError as exc:
        return str(exc.sqlstate)
    finally:
        await conn.close()
    return ""


@pytest.fixture
def ha_cluster(request: pytest.FixtureRequest) -> Iterator[HaCluster]:
    """A started primary + synchronous standby, stopped and removed after the test (even on failure)."""
    postgres_marked(request)
    cluster = HaCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- the burst: clients on every replica, recording what they saw ------------------------------------------------


@dataclass
class Burst:
    """Writers (CAS and plain) and readers on every replica's URL, recording a :class:`History`.

    Every write writes a value of its own (``w<client>-<n>``), so the history
    can be checked for linearizability and every acknowledged write found in
    the database. Keys are few (``keys``) so CAS writers contend.
    """

    urls: list[str]
    writers: int = 16
    keys: int = 8
    seed: int = 13
    history: History = field(default_factory=lambda: History())
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Run every client until :attr:`stop` is set."""
        await asyncio.gather(*(self._client(n) for n in range(self.writers)))

    def acknowledged_writes(self) -> int:
        """How many writes were answered 2xx so far."""
        return sum(1 for op, _, _ in self.history.ops if op.kind != "read" and op.outcome == "ok")

    def first_acknowledged_after(self, moment: float, revision: int = 0) -> float | None:
        """When the first write answered after ``moment`` with a revision above ``revision`` completed, if any.

        Given the head the new primary had just after its promotion, that is the first write committed
        there (an upper bound: writes that committed while the head was read are not counted).
        """
        times = [
            op.ret
            for op, _, written in self.history.ops
            if op.kind != "read" and op.outcome == "ok" and op.ret > moment and (written or 0) > revision
        ]
        return min(times) if times else None

    async def _client(self, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        url = self.urls[n % len(self.urls)]
        history = self.history
        count = unreachable = 0
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while not self.stop.is_set():
                if history.unreachable > unreachable:  # that replica is down (killed): do not spin
                    unreachable = history.unreachable
                    await asyncio.sleep(0.05)
                count += 1
                key = f"k{rng.randrange(self.keys)}"
                value = f"w{n}-{count}".encode()
                roll = rng.random()
                if roll < 0.35:  # read-modify-write: a consistent read, then If-Match on what it saw
                    seen = await history.get(http, n, key, consistent=True)
                    if seen is not None:
                        await history.cas(http, n, key, value, seen[1])
                    else:
                        await asyncio.sleep(0.05)  # no primary right now: do not spin
                elif roll < 0.7:
                    await history.put(http, n, key, value)
                elif roll < 0.78:
                    await history.delete(http, n, key)
                elif roll < 0.9:
                    if await history.get(http, n, key, consistent=True) is None:
                        await asyncio.sleep(0.05)
                else:
                    await history.get(http, n, key, consistent=False)


async def check_database(url: str, burst: Burst) -> dict[str, bytes]:
    """Check the database against what clients were told; return its state (key to value).

    Sequences 1..head each once; no value written twice (a retried batch applied twice would be); every
    acknowledged PUT at the revision it was answered with, with its key and value.
    """
    conn = await asyncpg.connect(url, timeout=10)
    try:
        rows = await conn.fetch("SELECT sequence, type, key, value FROM tuco_events ORDER BY sequence")
        head = await conn.fetchval("SELECT sequence FROM tuco_head")
        state = await conn.fetch("SELECT key, value FROM tuco_state")
    finally:
        await conn.close()
    sequences = [row[0] for row in rows]
    assert sequences == list(range(1, head + 1)), f"sequences are not exactly 1..{head}"
    values = [bytes(row[3]) for row in rows if row[1] == 1]
    assert len(values) == len(set(values)), "a value was written twice: a batch was applied twice"
    at = {row[0]: (bytes(row[2]).decode(), bytes(row[3])) for row in rows}
    for op, _, revision in burst.history.ops:
        if op.kind != "read" and op.outcome == "ok" and op.value is not None:
            assert at.get(revision or 0) == (op.key, op.value), f"acknowledged write lost: {op} at {revision}"
    return {bytes(row[0]).decode(): bytes(row[1]) for row in state}


@dataclass
class FailoverReport:
    """What clients saw of each failover, in seconds from the promotion (monotonic clock of this process)."""

    killed: list[float] = field(default_factory=list)
    promoted: list[float] = field(default_factory=list)
    resumed: list[float] = field(default_factory=list)
    """Promotion to the first write committed on the new primary and acknowledged (an upper bound)."""

    def stalled(self, burst: Burst) -> list[float]:
        """Per failover: promotion to the acknowledgement of the last write that was waiting across it."""
        waits = []
        for killed, promoted in zip(self.killed, self.promoted, strict=True):
            answered = [
                op.ret - promoted
                for op, _, _ in burst.history.ops
                if op.kind != "read"
                and op.outcome == "ok"
                and op.call < promoted
                and op.ret > promoted
                and op.call > killed - 60
            ]
            waits.append(max(answered, default=0.0))
        return waits

    def summary(self, burst: Burst) -> str:
        """One line: how many failovers and the resume figures (median and max)."""
        stalled = self.stalled(burst)
        kill = [p - k for k, p in zip(self.killed, self.promoted, strict=True)]
        return (
            f"{len(self.promoted)} failovers; kill to promotion median {statistics.median(kill):.3f} s; "
            f"promotion to the first write acknowledged from the new primary: median "
            f"{statistics.median(self.resumed):.3f} s, max {max(self.resumed):.3f} s; "
            f"promotion to the last waiting write acknowledged: median {statistics.median(stalled):.3f} s, "
            f"max {max(stalled):.3f} s"
        )


async def drive_failovers(
    cluster: HaCluster,
    burst: Burst,
    rounds: int,
    *,
    flowing: int = 100,
    outage: float = 0.0,
    seconds: float = math.inf,
    progress: Callable[[str], object] | None = None,
) -> FailoverReport:
    """Fail the cluster over ``rounds`` times, each once ``flowing`` more writes were acknowledged; stop the burst.

    ``outage`` is the time without any primary between the kill and the promotion; no failover starts after
    ``seconds``.
    """
    report = FailoverReport()
    deadline = time.monotonic() + seconds
    try:
        for n in range(rounds):
            if time.monotonic() > deadline:
                break
            before = burst.acknowledged_writes()
            while burst.acknowledged_writes() < before + flowing:  # mid-burst: writes are flowing
                await asyncio.sleep(0.02)
            report.killed.append(await asyncio.to_thread(cluster.kill_primary))
            await asyncio.sleep(outage)
            promoted = await asyncio.to_thread(cluster.promote)
            report.promoted.append(promoted)
            head = int(await asyncio.to_thread(cluster.query, "SELECT sequence FROM tuco_head", database="tuco"))
            await asyncio.to_thread(cluster.rebuild_standby)
            while (first := burst.first_acknowledged_after(promoted, head)) is None:
                await asyncio.sleep(0.02)
            report.resumed.append(first - promoted)
            if progress is not None:
                progress(f"failover {n + 1}: first write from the new primary {first - promoted:.3f} s after promotion")
    finally:
        burst.stop.set()
    return report
