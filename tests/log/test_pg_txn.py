"""Transactions on PostgreSQL (one call of tuco_txn) decide exactly as the one-writer logs do, and replicas follow."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.log.test_postgres_log import Replica, query, run, wait_until
from tuco.core.events import EventType, Expiry
from tuco.core.store import Store
from tuco.core.txn import Compare, Txn, TxnOp, TxnOutcome
from tuco.errors import LeaseNotFoundError
from tuco.testing import MemoryLog, RecordingSink

pytestmark = pytest.mark.postgres

KEYS = ["a", "b", "c", "p/1", "p/2", "p/3", "q/1"]


def random_txn(rng: random.Random) -> Txn:
    """A transaction of random compares and operations over a few keys (never a key written twice)."""
    compares = tuple(
        Compare(
            rng.choice(KEYS),
            target := rng.choice(["value", "mod_revision", "create_revision", "version", "exists"]),
            rng.choice(["==", "!=", "<", ">"]),
            rng.choice([b"", b"v1", b"v5"]) if target == "value" else rng.randint(0, 1 if target == "exists" else 12),
        )
        for _ in range(rng.randint(0, 2))
    )

    def branch() -> tuple[TxnOp, ...]:
        ops: list[TxnOp] = []
        written: set[str] = set()
        for _ in range(rng.randint(0, 4)):
            kind = rng.choice(["put", "put", "delete", "delete_prefix", "get", "list"])
            if kind == "delete_prefix":
                prefix = rng.choice(["p/", "q/"])
                if any(k.startswith(prefix) for k in written):
                    continue
                written.update(k for k in KEYS if k.startswith(prefix))
                ops.append(TxnOp(kind, prefix))
            elif kind in ("put", "delete"):
                key = rng.choice([k for k in KEYS if k not in written] or ["z"])
                if key in written:
                    continue
                written.add(key)
                ops.append(TxnOp(kind, key, b"v%d" % rng.randint(0, 9) if kind == "put" else b""))
            elif kind == "get":
                ops.append(TxnOp(kind, rng.choice(KEYS)))
            else:
                ops.append(TxnOp(kind, rng.choice(["", "p/", "q/"]), limit=rng.randint(1, 3)))
        return tuple(ops)

    return Txn(compares, branch(), branch())


def test_random_transactions_match_the_one_writer_decision(pg_dsn: str) -> None:
    """200 random transactions: PostgreSQL's outcomes, results and state equal the memory log's; a replica follows."""

    async def main() -> None:
        memory = MemoryLog()
        sink = RecordingSink(Store())
        await memory.run(sink)
        first = await Replica(pg_dsn).start()
        second = await Replica(pg_dsn).start()
        rng = random.Random(24)
        try:
            for _ in range(200):
                txn = random_txn(rng)
                expected = await memory.write_txn(txn)
                got = await first.log.write_txn(txn)
                assert isinstance(got, TxnOutcome)
                assert got.succeeded == expected.succeeded, txn
                assert got.revision == expected.revision, txn
                assert got.results == expected.results, txn
                assert (got.event is None) == (expected.event is None)
                if got.event is not None and expected.event is not None:
                    assert (got.event.sequence, got.event.type, got.event.value) == (
                        expected.event.sequence,
                        EventType.TXN,
                        expected.event.value,
                    )
            assert first.store.entries() == sink.store.entries()
            await wait_until(lambda: second.store.last_sequence == sink.store.last_sequence)
            assert second.store.entries() == sink.store.entries()
            state = await query(pg_dsn, "SELECT key, value, create_revision, sequence, version FROM tuco_state")
            assert {r[0].decode(): (bytes(r[1]), r[2], r[3], r[4]) for r in state} == sink.store.entries()
        finally:
            await first.log.aclose()
            await second.log.aclose()
            await memory.aclose()
        third = await Replica(pg_dsn).start()  # bootstrap from the state, whatever the head's type
        try:
            assert third.store.entries() == sink.store.entries()
            assert third.store.last_sequence == sink.store.last_sequence
        finally:
            await third.log.aclose()

    run(main)


def test_a_missing_lease_refuses_the_whole_transaction(pg_dsn: str) -> None:
    """A put on a lease that does not exist refuses the transaction: nothing written, no revision taken."""

    async def main() -> None:
        replica = await Replica(pg_dsn).start()
        try:
            await replica.put("k", b"1")
            txn = Txn((), (TxnOp("put", "a", b"x"), TxnOp("put", "b", b"y", lease=12345)), ())
            with pytest.raises(LeaseNotFoundError) as refused:
                await replica.log.write_txn(txn)
            assert refused.value.lease == 12345
            assert [r[0] for r in await query(pg_dsn, "SELECT sequence FROM tuco_head")] == [1]
            assert [r[0].decode() for r in await query(pg_dsn, "SELECT key FROM tuco_state")] == ["k"]
            granted = await replica.log.write_expiring(EventType.LEASE_GRANT, "", b"", None, Expiry(ttl=60_000))
            leased = await replica.log.write_txn(Txn((), (TxnOp("put", "b", b"y", lease=granted.lease),), ()))
            assert leased.revision == 3 and replica.store.lease_of("b") == granted.lease
        finally:
            await replica.log.aclose()

    run(main)


def test_concurrent_transactions_on_two_replicas_are_serialized(pg_dsn: str) -> None:
    """Two replicas incrementing one counter by compare-and-swap: every success is one increment, none lost."""

    async def main() -> None:
        replicas = [await Replica(pg_dsn).start(), await Replica(pg_dsn).start()]
        await replicas[0].put("n", b"0")
        successes = 0

        async def worker(replica: Replica) -> None:
            nonlocal successes
            for _ in range(40):
                read = await replica.log.write_txn(Txn((), (TxnOp("get", "n"),), ()))
                entry = read.results[0].entry
                assert entry is not None
                swap = Txn(
                    (Compare("n", "mod_revision", "==", entry.mod_revision),),
                    (TxnOp("put", "n", b"%d" % (int(entry.value) + 1)),),
                    (),
                )
                if (await replica.log.write_txn(swap)).succeeded:
                    successes += 1

        try:
            await asyncio.gather(*(worker(r) for r in replicas))
            rows = await query(pg_dsn, "SELECT value FROM tuco_state WHERE key = 'n'::bytea")
            assert int(bytes(rows[0][0])) == successes > 0
        finally:
            for replica in replicas:
                await replica.log.aclose()

    run(main)
