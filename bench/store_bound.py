"""RSS of a full-state replica filled to its store bound (TUCO_MAX_STORE_BYTES), on the file log or PostgreSQL.

``.venv/bin/python bench/store_bound.py [--bound-mib 128] [--value-bytes 1024] [--backend file|postgres]``

Starts ``tuco serve`` with the bound, reads its RSS once ready (the baseline),
fills it over pipelined keep-alive connections with distinct keys until a PUT
answers ``507 store_full``, then reports what ``/readyz`` counts, the RSS at
the bound, and the RSS above the baseline per byte of the bound: the figure
that tells how to size a container's memory limit from the bound. It then
deletes a tenth of the keys and checks that PUTs are taken again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import status_kib
from _server import ServerProcess, free_port, tuco_command

_PIPELINE = 64
_CONNECTIONS = 4
_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _exchange(port: int, requests: list[bytes]) -> list[int]:
    """Send ``requests`` pipelined on one connection; return each answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses: list[int] = []
    try:
        for start in range(0, len(requests), _PIPELINE):
            chunk = requests[start : start + _PIPELINE]
            writer.write(b"".join(chunk))
            await writer.drain()
            for _ in chunk:
                head = await reader.readuntil(b"\r\n\r\n")
                statuses.append(int(head.split(b" ", 2)[1]))
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()
    return statuses


def _put(key: str, value: bytes) -> bytes:
    return b"PUT /v1/key/%s HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s" % (key.encode(), len(value), value)


def _delete(key: str) -> bytes:
    return b"DELETE /v1/key/%s HTTP/1.1\r\nHost: b\r\n\r\n" % key.encode()


async def _fill(port: int, value: bytes, batch: int) -> tuple[int, int]:
    """PUT distinct keys in rounds of ``batch`` per connection until one is refused; return (stored, refused)."""
    stored = refused = 0
    next_key = 0
    while not refused:
        rounds = []
        for _ in range(_CONNECTIONS):
            keys = [f"fill-{n:09d}" for n in range(next_key, next_key + batch)]
            next_key += batch
            rounds.append(_exchange(port, [_put(key, value) for key in keys]))
        for statuses in await asyncio.gather(*rounds):
            stored += statuses.count(201)
            refused += statuses.count(507)
            others = [s for s in statuses if s not in (201, 507)]
            if others:
                raise SystemExit(f"unexpected answers while filling: {sorted(set(others))}")
    return stored, refused


def _readyz(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as answer:
            return dict(json.loads(answer.read()))
    except urllib.error.HTTPError as error:
        return dict(json.loads(error.read()))


def _database(create: bool, name: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(_ADMIN_URL)
        try:
            statement = f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bound-mib", type=int, default=128, help="TUCO_MAX_STORE_BYTES, in MiB (default 128)")
    parser.add_argument("--value-bytes", type=int, default=1024, help="bytes per value (default 1024)")
    parser.add_argument("--backend", choices=("file", "postgres"), default="file")
    args = parser.parse_args()
    bound = args.bound_mib << 20
    port = free_port()
    env = {
        "TUCO_PORT": str(port),
        "TUCO_MAX_STORE_BYTES": str(bound),
        "TUCO_LOG_LEVEL": "warning",
        "TUCO_LOG_SYNC": "everysec",
    }
    database = f"tuco_bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="tuco-bound-") as data:
        env["TUCO_DATA_DIR"] = data
        if args.backend == "postgres":
            _database(True, database)
            env.update(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=_ADMIN_URL.rsplit("/", 1)[0] + "/" + database)
        try:
            with ServerProcess("store-bound", tuco_command(), env, port) as server:
                server.wait_ready(60)
                baseline = status_kib(server.pid, "VmRSS")
                started = time.perf_counter()
                stored, refused = asyncio.run(_fill(port, os.urandom(args.value_bytes // 2).hex().encode(), 500))
                seconds = time.perf_counter() - started
                store = _readyz(port)["store"]
                assert isinstance(store, dict)
                at_bound = status_kib(server.pid, "VmRSS")
                peak = status_kib(server.pid, "VmHWM")
                tenth = [f"fill-{n:09d}" for n in range(stored // 10)]
                deleted = asyncio.run(_exchange(port, [_delete(key) for key in tenth])).count(200)
                again = asyncio.run(_exchange(port, [_put(f"again-{n}", b"v" * args.value_bytes) for n in range(100)]))
                server.check_alive()
        finally:
            if args.backend == "postgres":
                _database(False, database)
    above = (at_bound - baseline) * 1024
    print(f"backend {args.backend}, bound {bound} bytes ({args.bound_mib} MiB), values of {args.value_bytes} bytes")
    print(f"filled in {seconds:.1f} s: {stored} keys stored, {refused} PUTs answered 507 store_full")
    print(f"/readyz store: {json.dumps(store)}")
    print(f"RSS: {baseline / 1024:.1f} MiB ready and empty, {at_bound / 1024:.1f} MiB at the bound", end="")
    print(f" (peak {peak / 1024:.1f})")
    print(f"RSS above the empty server: {above / 2**20:.1f} MiB = {above / bound:.2f} x the bound")
    print(f"after deleting {deleted} keys: {again.count(201)} of 100 new PUTs taken")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
