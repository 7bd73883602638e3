"""Schema version 6 on PostgreSQL: a lease's owner is recorded with its grant; a version 5 database migrates."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.log.test_pg_schema import V1_SCHEMA
from tests.log.test_postgres_log import Replica, query, run
from tuco.core.events import EventType, Expiry
from tuco.log import _pg_migrations as migrations

pytestmark = pytest.mark.postgres


async def _make_v5_with_a_lease(dsn: str) -> int:
    """A database as a version 5 build left it, with one lease granted through version 5's function; its id."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in V1_SCHEMA:
                await conn.execute(statement)
            for version in range(2, 6):
                for statement in migrations.MIGRATIONS[version]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO tuco_schema (version) VALUES ($1)", version)
        return await _v5_grant(conn)
    finally:
        await conn.close()


async def _v5_grant(conn: asyncpg.Connection) -> int:
    """Grant a lease as a version 5 replica does (an empty value: it knows no owners); the lease's id."""
    row = await conn.fetchrow(
        "SELECT first_sequence FROM tuco_write_batch($1, $2, $3, $4, $5, $6, $7, $8)",
        uuid.uuid4(),
        [EventType.LEASE_GRANT],
        [b""],
        [b""],
        [None],
        [60_000],
        [None],
        [False],
    )
    return int(row[0])


def test_a_version_5_database_migrates_and_new_grants_record_their_owner(pg_dsn: str) -> None:
    """The old lease has no owner; a new one keeps its owner in its event and row; a fresh replica knows both."""

    async def main() -> None:
        old = await _make_v5_with_a_lease(pg_dsn)
        first = await Replica(pg_dsn).start()
        try:
            assert [r[0] for r in await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY 1")] == [
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
            ]
            found = first.store.leases.get(old)
            assert found is not None and found.owner == ""
            granted = await first.log.write_expiring(
                EventType.LEASE_GRANT, "", b"uri:spiffe://example/svc", expiry=Expiry(ttl=60_000)
            )
            assert granted.value == b"uri:spiffe://example/svc"
            mine = first.store.leases.get(granted.lease)
            assert mine is not None and mine.owner == "uri:spiffe://example/svc"
            conn = await asyncpg.connect(pg_dsn)
            try:
                during_upgrade = await _v5_grant(conn)  # a version 5 replica still running: no owner
            finally:
                await conn.close()
            rows = await query(pg_dsn, "SELECT id, owner FROM tuco_leases ORDER BY id")
            assert [(r[0], r[1]) for r in rows] == [
                (old, None),
                (granted.lease, b"uri:spiffe://example/svc"),
                (during_upgrade, None),
            ]
        finally:
            await first.log.aclose()
        fresh = await Replica(pg_dsn).start()
        try:
            owners = {lease.id: lease.owner for lease in fresh.store.leases}
            assert owners == {old: "", granted.lease: "uri:spiffe://example/svc", during_upgrade: ""}
            assert fresh.store.leases.owned_by("uri:spiffe://example/svc") == 1
        finally:
            await fresh.log.aclose()

    run(main)
