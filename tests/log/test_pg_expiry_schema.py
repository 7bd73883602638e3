"""Schema version 4 on PostgreSQL: a version 3 database migrates in place, and version 3 writers stay correct."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.fix_db import entries_of, state_entries
from tests.log.test_pg_schema import V1_SCHEMA
from tests.log.test_postgres_log import Replica, query, run
from tuco.core.events import Entry, Event, EventType, Expiry, Precondition
from tuco.errors import LeaseNotFoundError, PreconditionFailedError
from tuco.log import _pg_migrations as migrations

pytestmark = pytest.mark.postgres


async def _make_v3(dsn: str) -> None:
    """A database as a version 3 build left it, with a few keys written through version 3's function."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in V1_SCHEMA:
                await conn.execute(statement)
            await conn.execute(migrations._V2_WRITE_FUNCTION)
            await conn.execute("INSERT INTO tuco_schema (version) VALUES (2)")
            for statement in migrations._V3:
                await conn.execute(statement)
            await conn.execute("INSERT INTO tuco_schema (version) VALUES (3)")
        await _v3_call(conn, [(1, "a", b"1"), (1, "b", b"2"), (1, "a", b"3")])
    finally:
        await conn.close()


async def _v3_call(conn: asyncpg.Connection, batch: list[tuple[int, str, bytes]]) -> tuple[int, int]:
    """Write a batch as a version 3 replica does: the five-argument call."""
    row = await conn.fetchrow(
        "SELECT first_sequence, last_sequence FROM tuco_write_batch($1, $2, $3, $4, $5)",
        uuid.uuid4(),
        [t for t, _, _ in batch],
        [k.encode() for _, k, _ in batch],
        [v for _, _, v in batch],
        None,
    )
    return row[0], row[1]


def test_a_version_3_database_is_migrated_and_keeps_its_state(pg_dsn: str) -> None:
    """A v3 database gets the deadline columns and the lease table; its keys load without deadlines."""

    async def main() -> None:
        await _make_v3(pg_dsn)
        replica = await Replica(pg_dsn).start()
        try:
            versions = await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY version")
            assert [r[0] for r in versions] == [1, 2, 3, 4, 5, 6, 7, 8]
            assert replica.bootstrap == [
                Event(2, EventType.PUT, "b", b"2", 2, 1),
                Event(3, EventType.PUT, "a", b"3", 1, 2),
            ]
            assert entries_of(replica.store) == {"a": Entry(b"3", 1, 3, 2), "b": Entry(b"2", 2, 2, 1)}
            assert replica.store.key_expiry("a") is None
            assert [tuple(r) for r in await query(pg_dsn, "SELECT count(*) FROM tuco_leases")] == [(0,)]
            put = await replica.log.write_expiring(EventType.PUT, "a", b"4", None, Expiry(ttl=60_000))
            assert (put.sequence, put.deadline > 0) == (4, True)
            rows = await query(pg_dsn, "SELECT deadline, lease FROM tuco_state WHERE key = 'a'")
            assert [tuple(r) for r in rows] == [(put.deadline, None)]
        finally:
            await replica.log.aclose()

    run(main)


def test_a_version_3_writer_during_the_upgrade_clears_a_deadline(pg_dsn: str) -> None:
    """A v3 replica's plain PUT of a key with a deadline makes it permanent, as a v4 replica's PUT does."""

    async def main() -> None:
        await _make_v3(pg_dsn)
        replica = await Replica(pg_dsn).start()
        old = await asyncpg.connect(pg_dsn)
        try:
            await replica.log.write_expiring(EventType.PUT, "b", b"expiring", None, Expiry(ttl=60_000))
            assert await _v3_call(old, [(1, "b", b"permanent")]) == (5, 5)
            rows = await query(pg_dsn, "SELECT value, deadline, lease, version FROM tuco_state WHERE key = 'b'")
            assert [tuple(r) for r in rows] == [(b"permanent", None, None, 3)]
            await replica.log.catch_up()
            assert replica.store.key_expiry("b") is None
            assert entries_of(replica.store) == await state_entries(pg_dsn)
        finally:
            await old.close()
            await replica.log.aclose()

    run(main)


def test_the_database_clock_decides_and_keepalives_win_over_late_expiries(pg_dsn: str) -> None:
    """An expiry DELETE is refused before the deadline by the database's clock, and after a keepalive moved it."""

    async def main() -> None:
        a = await Replica(pg_dsn).start()
        b = await Replica(pg_dsn).start()
        try:
            lease = await a.log.write_expiring(EventType.LEASE_GRANT, "", expiry=Expiry(ttl=1_000))
            held = await a.log.write_expiring(EventType.PUT, "held", b"v", None, Expiry(lease=lease.lease))
            await asyncio.sleep(0.5)
            kept = await b.log.write_expiring(EventType.LEASE_KEEPALIVE, "", expiry=Expiry(lease=lease.lease))
            assert kept.deadline >= lease.deadline + 400
            await asyncio.sleep(max(0, lease.deadline + 100 - a.log.now_ms()) / 1000)  # past the first deadline
            # Replica a has not necessarily applied the keepalive: its expiry write is still judged by the database.
            conn = await asyncpg.connect(pg_dsn)
            try:
                db_now = await conn.fetchval("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint")
            finally:
                await conn.close()
            assert db_now < kept.deadline
            with pytest.raises(PreconditionFailedError):
                await a.log.write_expiring(
                    EventType.DELETE, "held", b"", Precondition(held.sequence), Expiry(expired=True)
                )
            with pytest.raises(PreconditionFailedError):
                await a.log.write_expiring(EventType.LEASE_REVOKE, "", expiry=Expiry(lease=lease.lease, expired=True))
            with pytest.raises(LeaseNotFoundError):
                await a.log.write_expiring(EventType.LEASE_KEEPALIVE, "", expiry=Expiry(lease=12345))
            assert [tuple(r) for r in await query(pg_dsn, "SELECT count(*) FROM tuco_events WHERE type = 2")] == [(0,)]
            assert held.lease == lease.lease
        finally:
            await a.log.aclose()
            await b.log.aclose()

    run(main)
