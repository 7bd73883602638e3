"""Many leases ending at once: how long until every one is revoked, and whether the server answers meanwhile.

    .venv/bin/python bench/lease_expiry.py                          # 100,000 leases, a key on each, file log
    .venv/bin/python bench/lease_expiry.py --backend postgres       # the same on PostgreSQL (127.0.0.1:5432)
    .venv/bin/python bench/lease_expiry.py --leases 20000 --no-keys

The leases (and their keys) are written straight into a fresh file log (``tuco.core.codec``) or a fresh
database (the tables the write function fills), all ending ``--lead`` seconds after the server is ready.
From that deadline on, the harness reads ``tuco_leases`` and ``tuco_keys`` from ``/metrics`` until both
are 0, and meanwhile asks ``GET /healthz`` every 50 ms and reads random ended leases and their keys:
it reports the seconds to revoke them all, the longest ``/healthz`` wait (the longest the event loop was
busy), and how many reads of an ended lease or key answered anything but 404 (it must be none).
Prints one JSON object; exits 1 if a read served an ended lease or key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from _server import ServerProcess, free_port, tuco_command

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def build_file_log(path: Path, leases: int, keys: bool, deadline: int, ttl: int) -> None:
    """A log of ``leases`` grants ending at ``deadline`` (Unix ms), each followed by a PUT of its key."""
    from tuco.core.codec import encode_event, encode_header
    from tuco.core.events import Event, EventType, Lifetime

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(encode_header())
        records = []
        sequence = 0
        for n in range(leases):
            sequence += 1
            lease = sequence
            records.append(
                encode_event(Event(sequence, EventType.LEASE_GRANT, "", b"", 0, 0, Lifetime(deadline, lease, ttl)))
            )
            if keys:
                sequence += 1
                records.append(encode_event(Event(sequence, EventType.PUT, f"k{n}", b"v", 0, 0, Lifetime(0, lease, 0))))
        f.write(b"".join(records))


async def build_database(dsn: str, leases: int, keys: bool, deadline: int, ttl: int) -> None:
    """The same in a fresh database: the rows tuco_write_batch would have written for those grants and PUTs."""
    import asyncpg

    from tuco.log._pg_schema import ensure_schema

    conn = await asyncpg.connect(dsn)
    try:
        await ensure_schema(conn)
        step = 2 if keys else 1
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO tuco_events (sequence, type, key, value, deadline, lease, ttl) "
                "SELECT s, 4, ''::bytea, ''::bytea, $1::bigint, s, $2::bigint "
                "FROM generate_series(1, $3::bigint * $4::bigint, $4::bigint) s",
                deadline,
                ttl,
                leases,
                step,
            )
            await conn.execute(
                "INSERT INTO tuco_leases (id, ttl, deadline) SELECT s, $2::bigint, $1::bigint "
                "FROM generate_series(1, $3::bigint * $4::bigint, $4::bigint) s",
                deadline,
                ttl,
                leases,
                step,
            )
            if keys:
                await conn.execute(
                    "INSERT INTO tuco_events (sequence, type, key, value, lease) "
                    "SELECT 2 * n, 1, convert_to('k' || (n - 1), 'UTF8'), 'v'::bytea, 2 * n - 1 "
                    "FROM generate_series(1, $1::bigint) n",
                    leases,
                )
                await conn.execute(
                    "INSERT INTO tuco_state (key, value, sequence, create_revision, version, lease) "
                    "SELECT convert_to('k' || (n - 1), 'UTF8'), 'v'::bytea, 2 * n, 2 * n, 1, 2 * n - 1 "
                    "FROM generate_series(1, $1::bigint) n",
                    leases,
                )
            await conn.execute("UPDATE tuco_head SET sequence = $1 WHERE id = 1", leases * step)
    finally:
        await conn.close()


def _metric(client: httpx.Client, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", client.get("/metrics").text, re.M)
    return float(found[1]) if found else -1.0


class _Prober(threading.Thread):
    """``GET /healthz`` every 50 ms, and reads of random ended leases and keys; the longest wait, and wrong answers."""

    def __init__(self, url: str, leases: int, keys: bool, step: int) -> None:
        super().__init__(daemon=True)
        self.url, self.leases, self.keys, self.step = url, leases, keys, step
        self.longest = 0.0
        self.reads = 0
        self.served: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self.done.is_set():
                started = time.perf_counter()
                client.get("/healthz")
                self.longest = max(self.longest, time.perf_counter() - started)
                n = random.randrange(self.leases)
                answer = client.get(f"/v1/leases/{n * self.step + 1}")
                self.reads += 1
                if answer.status_code != 404:
                    self.served.append(f"GET /v1/leases/{n * self.step + 1}: {answer.status_code}")
                if self.keys:
                    answer = client.get(f"/v1/key/k{n}")
                    self.reads += 1
                    if answer.status_code != 404:
                        self.served.append(f"GET /v1/key/k{n}: {answer.status_code}")
                self.done.wait(0.05)


def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {
        "TUCO_PORT": str(port),
        "TUCO_MAX_LEASES": str(args.leases),
        "TUCO_LOG_LEVEL": "warning",
        "TUCO_REQUEST_TIMEOUT_SECONDS": "300",
    }
    step = 2 if args.keys else 1
    ttl = 3_600_000
    with tempfile.TemporaryDirectory(prefix="tuco-lease-expiry-") as data:
        env["TUCO_DATA_DIR"] = data
        deadline = int(time.time() * 1000) + int(args.lead * 1000)
        database = None
        if args.backend == "postgres":
            import asyncpg

            database = f"tuco_bench_{uuid.uuid4().hex[:12]}"

            async def admin(statement: str) -> None:
                conn = await asyncpg.connect(ADMIN)
                try:
                    await conn.execute(statement)
                finally:
                    await conn.close()

            asyncio.run(admin(f'CREATE DATABASE "{database}"'))
            dsn = ADMIN.rsplit("/", 1)[0] + "/" + database
            asyncio.run(build_database(dsn, args.leases, args.keys, deadline, ttl))
            env.update(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=dsn)
        else:
            build_file_log(Path(data) / "tuco.log", args.leases, args.keys, deadline, ttl)
        try:
            with ServerProcess("lease-expiry", tuco_command(), env, port) as server:
                server.wait_ready(timeout=120)
                with httpx.Client(base_url=server.url, timeout=300) as client:
                    before = (_metric(client, "tuco_leases"), _metric(client, "tuco_keys"))
                    if time.time() * 1000 >= deadline:
                        raise SystemExit(f"the server took longer than --lead ({args.lead} s) to start")
                    while time.time() * 1000 < deadline:
                        time.sleep(0.005)
                    started = time.perf_counter()
                    prober = _Prober(server.url, args.leases, args.keys, step)
                    prober.start()
                    while (_metric(client, "tuco_leases"), _metric(client, "tuco_keys")) != (0.0, 0.0):
                        if time.perf_counter() - started > args.give_up:
                            raise SystemExit(f"not all revoked after {args.give_up} s")
                        time.sleep(0.05)
                    seconds = time.perf_counter() - started
                    prober.done.set()
                    prober.join()
                server.check_alive()
        finally:
            if database is not None:
                asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    return {
        "backend": args.backend,
        "leases": int(before[0]),
        "keys": int(before[1]),
        "seconds_to_revoke_all": round(seconds, 2),
        "revokes_per_second": round(args.leases / seconds),
        "longest_healthz_wait_ms": round(prober.longest * 1000, 1),
        "reads_of_ended": prober.reads,
        "reads_served_as_live": prober.served[:10],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("file", "postgres"), default="file")
    parser.add_argument("--leases", type=int, default=100_000)
    parser.add_argument("--no-keys", dest="keys", action="store_false", help="leases only, no key on each")
    parser.add_argument("--lead", type=float, default=30.0, help="seconds from now to the leases' end")
    parser.add_argument("--give-up", type=float, default=600.0)
    result = run(parser.parse_args(argv))
    print(json.dumps(result, indent=2))
    return 0 if not result["reads_served_as_live"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
