"""Transactions on the file log: the wall time of one 1,000-op transaction, and 2- and 10-op throughput.

``.venv/bin/python bench/txn.py [--runs 5] [--clients 16] [--each 150]``

One process serves a fresh file log (``TUCO_LOG_SYNC=always``, the default) on the
native server over loopback; httpx clients in the same process send
``POST /v1/txn``. Prints the median (and each run) of a 1,000-put transaction of
100-byte values, then the transactions per second of 2- and 10-put transactions
(each with a compare) from ``--clients`` concurrent clients. Wall-clock figures:
they move with the machine's load; compare runs on one machine at rest.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tuco.http.api import KeyValueAPI
from tuco.http.server import start_server
from tuco.log.file import FileTransactionLog
from tuco.service import Service

VALUE = base64.b64encode(b"x" * 100).decode()


async def main(runs: int, clients: int, each: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        service = Service(FileTransactionLog(Path(directory) / "tuco.log"))
        await service.start()
        server = await start_server(KeyValueAPI(service).handle, host="127.0.0.1", port=0)
        host, port = server.addresses[0]
        url = f"http://{host}:{port}"
        try:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                times = []
                for run in range(runs):
                    body = {"success": [{"put": {"key": f"big{run}/{i}", "value": VALUE}} for i in range(1000)]}
                    started = time.perf_counter()
                    answer = await http.post("/v1/txn", json=body)
                    times.append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
                shown = ", ".join(f"{t * 1000:.1f}" for t in times)
                print(f"1,000-op transaction: median {statistics.median(times) * 1000:.1f} ms ({shown})")
            for ops in (2, 10):
                elapsed = await _throughput(url, ops, clients, each)
                print(f"{ops}-op transactions: {clients * each / elapsed:.0f}/s ({clients} clients x {each})")
        finally:
            await server.aclose(grace=1.0)
            await service.aclose()


async def _throughput(url: str, ops: int, clients: int, each: int) -> float:
    async def client(number: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for _ in range(each):
                body = {
                    "compare": [{"key": f"c{number}/0", "target": "version", "op": "!=", "value": 1 << 40}],
                    "success": [{"put": {"key": f"c{number}/{i}", "value": VALUE}} for i in range(ops)],
                }
                answer = await http.post("/v1/txn", json=body)
                assert answer.status_code == 200, answer.text

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--each", type=int, default=150)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.clients, arguments.each))
