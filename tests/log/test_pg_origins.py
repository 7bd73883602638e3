"""Schema version 8 on PostgreSQL: each change's origin is recorded; a version 7 database migrates in place."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.log.test_pg_schema import V1_SCHEMA
from tests.log.test_postgres_log import Replica, query, run, wait_until
from tuco.core.events import EventType, Expiry, Precondition
from tuco.core.origin import EXPIRER, LEASE_REVOKE, Origin, Reason, new_origin
from tuco.core.txn import Txn, TxnOp
from tuco.errors import PreconditionFailedError
from tuco.log import _pg_migrations as migrations
from tuco.log import _pg_schema as sql

pytestmark = pytest.mark.postgres

_ALICE = new_origin("tok-alice", 0)


async def _make_v7(dsn: str) -> None:
    """A database as a version 7 build left it, with a put, a delete and a transaction written by version 7's calls."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in V1_SCHEMA:
                await conn.execute(statement)
            for version in range(2, 8):
                for statement in migrations.MIGRATIONS[version]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO tuco_schema (version) VALUES ($1)", version)
        await _v7_write(conn, [(1, "a", b"a1"), (1, "b", b"b1"), (2, "b", b"")])  # 1-3
        await conn.fetch(  # 4: a transaction putting c, as a version 7 replica calls tuco_txn
            "SELECT * FROM tuco_txn($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            uuid.uuid4(),
            [],
            [],
            [],
            [],
            [],
            [True],
            [1],
            [b"c"],
            [b"c1"],
            [None],
            [None],
            [None],
        )
    finally:
        await conn.close()


async def _v7_write(conn: asyncpg.Connection, mutations: list[tuple[int, str, bytes]]) -> int:
    """Write a batch as a version 7 replica does (the five-argument call, no origins); its last sequence."""
    row = await conn.fetchrow(
        "SELECT last_sequence FROM tuco_write_batch($1, $2, $3, $4, $5)",
        uuid.uuid4(),
        [t for t, _, _ in mutations],
        [k.encode() for _, k, _ in mutations],
        [v for _, _, v in mutations],
        None,
    )
    return int(row[0])


def _origins(replica: Replica, key: str) -> list[tuple[int, str, Origin | None]]:
    """The key's retained changes in the replica's history: (revision, put or delete, origin), newest first."""
    return [(c[0], "put" if c[1] == 1 else "delete", c[5]) for c in replica.store.history.changes_of(key, 10**9, 100)]


def test_a_version_7_database_migrates_and_old_rows_read_as_unknown(pg_dsn: str) -> None:
    """Version 7's rows have no origin on every replica; new writes record theirs, seen alike by a follower."""

    async def main() -> None:
        await _make_v7(pg_dsn)
        writer = await Replica(pg_dsn).start()
        follower = await Replica(pg_dsn).start()
        try:
            versions = await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY 1")
            assert [r[0] for r in versions] == [1, 2, 3, 4, 5, 6, 7, sql.SCHEMA_VERSION] == [1, 2, 3, 4, 5, 6, 7, 8]
            put = await writer.log.write_put("a", b"a2", Precondition(1), _ALICE)  # 5
            deleted = await writer.log.write_delete("c", None, new_origin("tok-bob", 0, Reason.DELETED))  # 6
            moved = await writer.log.write_txn(  # 7
                Txn((), (TxnOp("delete_prefix", "a"),), ()), new_origin("dns:svc-a", 0, Reason.RANGE_DELETE)
            )
            rows = await query(
                pg_dsn,
                "SELECT sequence, origin_by, origin_reason, floor(extract(epoch FROM committed_at) * 1000)::bigint"
                " FROM tuco_events ORDER BY sequence",
            )
            at = {r[0]: r[3] for r in rows}
            assert [(r[0], r[1], r[2]) for r in rows] == [
                (1, None, None),
                (2, None, None),
                (3, None, None),
                (4, None, None),
                (5, "tok-alice", 0),
                (6, "tok-bob", Reason.DELETED),
                (7, "dns:svc-a", Reason.RANGE_DELETE),
            ]
            assert put.origin == new_origin("tok-alice", at[5], 0)
            assert deleted.origin == new_origin("tok-bob", at[6], Reason.DELETED)
            assert moved.event is not None and moved.event.origin == new_origin("dns:svc-a", at[7], Reason.RANGE_DELETE)
            await wait_until(lambda: follower.store.last_sequence == 7)
            expected_a = [
                (7, "delete", new_origin("dns:svc-a", at[7], Reason.RANGE_DELETE)),
                (5, "put", new_origin("tok-alice", at[5], 0)),
            ]
            assert _origins(writer, "a") == _origins(follower, "a") == expected_a
            assert _origins(follower, "c") == [
                (6, "delete", new_origin("tok-bob", at[6], Reason.DELETED)),
                (4, "put", None),
            ]
            older = await follower.log.events_after(0, 7, 10)
            assert [(e.sequence, e.origin) for e in older] == [
                (1, None),
                (2, None),
                (3, None),
                (4, None),
                (5, new_origin("tok-alice", at[5], 0)),
                (6, new_origin("tok-bob", at[6], Reason.DELETED)),
                (7, new_origin("dns:svc-a", at[7], Reason.RANGE_DELETE)),
            ]
            conn = await asyncpg.connect(pg_dsn)
            try:  # a version 7 replica still running during the upgrade: its write has no origin
                assert await _v7_write(conn, [(1, "d", b"d1")]) == 8
            finally:
                await conn.close()
            await wait_until(lambda: follower.store.last_sequence == writer.store.last_sequence == 8)
            assert _origins(follower, "d") == _origins(writer, "d") == [(8, "put", None)]
        finally:
            await writer.log.aclose()
            await follower.log.aclose()

    run(main)


def test_expiry_and_lease_revokes_record_their_principals(pg_dsn: str) -> None:
    """An expired-only delete and a revoke's deletes carry the expirer's and lease-revoke's origins to followers."""

    async def main() -> None:
        writer = await Replica(pg_dsn).start()
        follower = await Replica(pg_dsn).start()
        try:
            grant = await writer.log.write_expiring(EventType.LEASE_GRANT, "", b"", expiry=Expiry(ttl=60_000))
            await writer.log.write_expiring(EventType.PUT, "held", b"h", None, Expiry(lease=grant.lease), _ALICE)
            await writer.log.write_expiring(EventType.PUT, "brief", b"b", None, Expiry(ttl=1), _ALICE)
            expired = None
            for _ in range(200):  # the database's clock decides when the key is due
                try:
                    expired = await writer.log.write_expiring(
                        EventType.DELETE,
                        "brief",
                        b"",
                        Precondition(writer.mod_revision("brief")),
                        Expiry(expired=True),
                        new_origin(EXPIRER, 0, Reason.EXPIRED),
                    )
                    break
                except PreconditionFailedError:  # not due yet by the database's clock
                    await asyncio.sleep(0.01)
            assert expired is not None and expired.origin is not None
            revoked = await writer.log.write_delete(
                "held", Precondition(writer.mod_revision("held")), new_origin(LEASE_REVOKE, 0, Reason.LEASE_REVOKED)
            )
            await wait_until(lambda: follower.store.last_sequence == revoked.sequence)
            for replica in (writer, follower):
                assert _origins(replica, "brief")[0] == (
                    expired.sequence,
                    "delete",
                    new_origin(EXPIRER, expired.origin[1], Reason.EXPIRED),
                )
                assert _origins(replica, "held")[0] == (revoked.sequence, "delete", revoked.origin)
                put_by = _origins(replica, "held")[1][2]
                assert put_by is not None and (put_by[0], put_by[2]) == ("tok-alice", 0)
            assert revoked.origin is not None and revoked.origin[0] == LEASE_REVOKE
        finally:
            await writer.log.aclose()
            await follower.log.aclose()

    run(main)
