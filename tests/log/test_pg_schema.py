"""The PostgreSQL schema across versions: a version 1 database is migrated in place, a newer one refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.log.test_postgres_log import Replica, query, run
from tuco.core.events import Event, EventType
from tuco.errors import LogFormatError
from tuco.log import _pg_schema as sql

pytestmark = pytest.mark.postgres

# The schema exactly as version 1 created it, frozen here so the migration is tested against the real thing.
V1_SCHEMA = [
    "CREATE TABLE tuco_schema (version integer PRIMARY KEY, installed_at timestamptz NOT NULL DEFAULT now())",
    """CREATE TABLE tuco_events (sequence bigint PRIMARY KEY, type smallint NOT NULL, key bytea NOT NULL,
        value bytea NOT NULL, committed_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE TABLE tuco_state (key bytea PRIMARY KEY, value bytea NOT NULL, sequence bigint NOT NULL)",
    "CREATE INDEX tuco_state_sequence ON tuco_state (sequence)",
    "CREATE TABLE tuco_head (id integer PRIMARY KEY CHECK (id = 1), sequence bigint NOT NULL)",
    """CREATE TABLE tuco_batches (id uuid PRIMARY KEY, first_sequence bigint NOT NULL,
        last_sequence bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now())""",
    "INSERT INTO tuco_head (id, sequence) VALUES (1, 0)",
    "INSERT INTO tuco_schema (version) VALUES (1)",
]

# What a version 1 replica wrote: three events, one of them deleting a key, and its batch ids.
V1_DATA = [
    """INSERT INTO tuco_events (sequence, type, key, value) VALUES
        (1, 1, 'a', 'one'), (2, 1, 'b', 'two'), (3, 2, 'a', '')""",
    "INSERT INTO tuco_state (key, value, sequence) VALUES ('b', 'two', 2)",
    "UPDATE tuco_head SET sequence = 3",
    """INSERT INTO tuco_batches (id, first_sequence, last_sequence) VALUES
        ('00000000-0000-0000-0000-00000000000a', 1, 2), ('00000000-0000-0000-0000-00000000000b', 3, 3)""",
]


_WAITING_FOR_A_LOCK = """SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'tuco' AND wait_event_type = 'Lock'"""


async def _make_v1(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in V1_SCHEMA + V1_DATA:
                await conn.execute(statement)
    finally:
        await conn.close()


def test_a_version_1_database_is_migrated_and_keeps_its_history(pg_dsn: str) -> None:
    """Replicas starting together on a v1 database migrate it once; its state loads and new writes follow its head."""

    async def main() -> None:
        await _make_v1(pg_dsn)
        replicas = [Replica(pg_dsn) for _ in range(4)]
        await asyncio.gather(*(replica.start() for replica in replicas))
        try:
            versions = await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY version")
            assert [r[0] for r in versions] == [1, sql.SCHEMA_VERSION] == [1, 2]
            for replica in replicas:
                assert replica.bootstrap == [Event(2, EventType.PUT, "b", b"two")]
                assert replica.log.last_sequence == 3
            event = await replicas[0].put("c", b"three")
            assert event == Event(4, EventType.PUT, "c", b"three")
            state = await query(pg_dsn, "SELECT key, value, sequence FROM tuco_state ORDER BY key")
            assert [(bytes(r[0]), bytes(r[1]), r[2]) for r in state] == [(b"b", b"two", 2), (b"c", b"three", 4)]
            assert [r[0] for r in await query(pg_dsn, "SELECT sequence FROM tuco_head")] == [4]
        finally:
            for replica in replicas:
                await replica.log.aclose()

    run(main)


def test_a_version_1_writer_and_a_version_2_writer_share_the_order(pg_dsn: str) -> None:
    """In a rolling upgrade, an old replica's transaction holding the head lock orders a new replica's write."""

    async def main() -> None:
        await _make_v1(pg_dsn)
        replica = await Replica(pg_dsn).start()
        old = await asyncpg.connect(pg_dsn)
        try:
            transaction = old.transaction()
            await transaction.start()
            head = await old.fetchval("SELECT sequence FROM tuco_head WHERE id = 1 FOR UPDATE")
            write = asyncio.ensure_future(replica.put("new", b"v2"))
            while not await query(pg_dsn, _WAITING_FOR_A_LOCK):  # the new write queues behind the old writer
                await asyncio.sleep(0.02)
            assert not write.done()
            await old.execute(
                "INSERT INTO tuco_events (sequence, type, key, value) VALUES ($1, 1, 'old', 'v1')", head + 1
            )
            await old.execute("INSERT INTO tuco_state (key, value, sequence) VALUES ('old', 'v1', $1)", head + 1)
            await old.execute("UPDATE tuco_head SET sequence = $1 WHERE id = 1", head + 1)
            await transaction.commit()
            assert await write == Event(5, EventType.PUT, "new", b"v2")
            assert replica.applied == [4, 5]
            assert replica.store.snapshot() == {"b": b"two", "old": b"v1", "new": b"v2"}
        finally:
            await old.close()
            await replica.log.aclose()

    run(main)


def test_a_newer_schema_is_refused(pg_dsn: str) -> None:
    """A database migrated by a later build is not touched: start-up fails naming both versions."""

    async def main() -> None:
        await _make_v1(pg_dsn)
        await query(pg_dsn, "INSERT INTO tuco_schema (version) VALUES (3)")
        replica = Replica(pg_dsn)
        with pytest.raises(LogFormatError) as caught:
            await replica.log.open()
        await replica.log.aclose()
        assert str(caught.value) == "the database holds tuco schema version 3; this build reads version 2"
        assert [r[0] for r in await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY 1")] == [1, 3]

    run(main)
