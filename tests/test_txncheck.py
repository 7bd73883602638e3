"""The transaction checker: it accepts what is right and catches what is not; and tuco's histories pass it."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from tests.txncheck import Record, check_transactions
from tuco.http.api import KeyValueAPI
from tuco.http.server import start_server
from tuco.service import Service
from tuco.testing import MemoryLog

KEYS = ["a", "b", "c", "p/1", "p/2", "q/1"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def put(key: str, value: bytes) -> dict[str, Any]:
    return {"put": {"key": key, "value": b64(value)}}


def answer(revision: int, results: list[dict[str, Any]], succeeded: bool = True) -> dict[str, Any]:
    return {"succeeded": succeeded, "revision": revision, "results": results}


def test_a_serial_history_passes() -> None:
    """Two writes and a read between them, in real-time order, with the answers a store gives: no problem."""
    records = [
        Record({"success": [put("a", b"1")]}, 0.0, 1.0, answer(1, [{"put": {"revision": 1}}])),
        Record({"success": [{"get": {"key": "a"}}]}, 2.0, 3.0, answer(1, [{"get": _got("a", b"1", 1, 1, 1)}])),
        Record(
            {"compare": [{"key": "a", "target": "version", "value": 1}], "success": [put("a", b"2"), put("b", b"x")]},
            4.0,
            5.0,
            answer(2, [{"put": {"revision": 2}}, {"put": {"revision": 2}}]),
        ),
    ]
    assert check_transactions(records) == []


def _got(key: str, value: bytes, created: int, modified: int, version: int) -> dict[str, Any]:
    return {
        "key": key,
        "value": b64(value),
        "create_revision": created,
        "mod_revision": modified,
        "version": version,
        "found": True,
    }


def test_a_skipped_compare_is_caught() -> None:
    """A transaction answered as succeeded though its compare did not hold at its revision."""
    records = [
        Record({"success": [put("a", b"1")]}, 0.0, 1.0, answer(1, [{"put": {"revision": 1}}])),
        Record(
            {"compare": [{"key": "a", "target": "version", "value": 2}], "success": [put("b", b"x")]},
            2.0,
            3.0,
            answer(2, [{"put": {"revision": 2}}]),
        ),
    ]
    assert check_transactions(records) != []


def test_a_transaction_split_over_two_revisions_is_caught() -> None:
    """Two puts answered at revision 3, with revision 2 written by nobody the clients know of."""
    records = [
        Record({"success": [put("a", b"1")]}, 0.0, 1.0, answer(1, [{"put": {"revision": 1}}])),
        Record(
            {"success": [put("a", b"2"), put("b", b"2")]},
            2.0,
            3.0,
            answer(3, [{"put": {"revision": 3}}, {"put": {"revision": 3}}]),
        ),
    ]
    assert check_transactions(records) != []


def test_a_stale_read_and_a_real_time_inversion_are_caught() -> None:
    """A read at revision 2 showing revision 1's value; a read invoked after a write ended, at an earlier revision."""
    write1 = Record({"success": [put("a", b"1")]}, 0.0, 1.0, answer(1, [{"put": {"revision": 1}}]))
    write2 = Record({"success": [put("a", b"2")]}, 2.0, 3.0, answer(2, [{"put": {"revision": 2}}]))
    stale = Record({"success": [{"get": {"key": "a"}}]}, 4.0, 5.0, answer(2, [{"get": _got("a", b"1", 1, 1, 1)}]))
    assert check_transactions([write1, write2, stale]) != []
    late = Record({"success": [{"get": {"key": "a"}}]}, 4.0, 5.0, answer(1, [{"get": _got("a", b"1", 1, 1, 1)}]))
    assert any("invoked after" in p for p in check_transactions([write1, write2, late]))


def random_body(rng: random.Random) -> dict[str, Any]:
    """A random transaction over a few keys (each key written at most once per branch)."""
    compares = []
    for _ in range(rng.randint(0, 2)):
        target = rng.choice(["value", "mod_revision", "create_revision", "version", "exists"])
        value: Any = (
            b64(rng.choice([b"", b"v1", b"v2"]))
            if target == "value"
            else rng.random() < 0.5
            if target == "exists"
            else rng.randint(0, 30)
        )
        compares.append(
            {"key": rng.choice(KEYS), "target": target, "op": rng.choice(["==", "!=", "<", ">"]), "value": value}
        )

    def branch() -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        written: set[str] = set()
        for _ in range(rng.randint(0, 3)):
            kind = rng.choice(["put", "put", "delete", "delete_prefix", "get", "list"])
            if kind == "delete_prefix":
                prefix = rng.choice(["p/", "q/"])
                if not any(k.startswith(prefix) for k in written):
                    written.update(k for k in KEYS if k.startswith(prefix))
                    ops.append({"delete_prefix": {"prefix": prefix}})
            elif kind in ("put", "delete"):
                free = [k for k in KEYS if k not in written]
                if free:
                    key = rng.choice(free)
                    written.add(key)
                    ops.append(put(key, b"v%d" % rng.randint(0, 2)) if kind == "put" else {"delete": {"key": key}})
            elif kind == "get":
                ops.append({"get": {"key": rng.choice(KEYS)}})
            else:
                ops.append({"list": {"prefix": rng.choice(["", "p/"]), "limit": rng.randint(1, 4)}})
        return ops

    return {"compare": compares, "success": branch(), "failure": branch()}


async def workload(urls: Sequence[str], clients: int, each: int, seed: int) -> list[Record]:
    """``clients`` clients sending ``each`` random transactions, spread over ``urls``; every one recorded."""
    records: list[Record] = []

    async def client(number: int) -> None:
        rng = random.Random(seed * 100 + number)
        async with httpx.AsyncClient(base_url=urls[number % len(urls)], timeout=30) as http:
            for _ in range(each):
                record = Record(random_body(rng), time.monotonic())
                records.append(record)
                response = await http.post("/v1/txn", json=record.body)
                assert response.status_code == 200, response.text
                record.answer = response.json()
                record.completed = time.monotonic()

    await asyncio.gather(*(client(n) for n in range(clients)))
    return records


def test_histories_on_the_memory_log_are_strictly_serializable() -> None:
    """8 concurrent clients, 100 random transactions each, through the native server: the checker passes."""

    async def main() -> list[str]:
        service = Service(MemoryLog())
        await service.start()
        server = await start_server(KeyValueAPI(service).handle, host="127.0.0.1", port=0)
        try:
            host, port = server.addresses[0]
            records = await workload([f"http://{host}:{port}"], 8, 100, seed=7)
        finally:
            await server.aclose(grace=1.0)
            await service.aclose()
        assert sum(1 for r in records if r.answer and r.answer["succeeded"]) > 100
        return check_transactions(records)

    assert asyncio.run(main()) == []
