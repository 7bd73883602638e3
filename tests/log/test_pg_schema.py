"""The PostgreSQL schema across versions: version 1 and 2 databases are migrated in place, a newer one refused."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.fix_db import entries_of, replayed_entries, state_entries
from tests.log.test_postgres_log import Replica, query, run
from tuco.core.events import Entry, Event, EventType, Precondition
from tuco.errors import LogFormatError
from tuco.log import _pg_migrations as migrations
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


# A version 2 database gets its history from the real version 2 function: keys deleted and re-created,
# several writes of one key in a batch, a delete of an absent key.
V2_BATCHES: list[list[tuple[int, str, bytes]]] = [
    [(1, "a", b"a1"), (1, "b", b"b1"), (1, "a", b"a2")],  # 1-3
    [(2, "a", b""), (1, "c", b"c1"), (2, "nobody", b"")],  # 4-6
    [(1, "a", b"a3"), (1, "b", b"b2"), (1, "a", b"a4"), (2, "c", b""), (1, "c", b"c2")],  # 7-11
    [(1, "b", b"b3"), (1, "d", b"d1"), (2, "d", b"")],  # 12-14
]


async def _make_v1(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in V1_SCHEMA + V1_DATA:
                await conn.execute(statement)
    finally:
        await conn.close()


async def _make_v2(dsn: str) -> None:
    """A database as a version 2 build left it, written through version 2's own function."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for statement in V1_SCHEMA:
                await conn.execute(statement)
            await conn.execute(migrations._V2_WRITE_FUNCTION)
            await conn.execute("INSERT INTO tuco_schema (version) VALUES (2)")
        for batch in V2_BATCHES:
            await _v2_call(conn, batch)
    finally:
        await conn.close()


async def _v2_call(conn: asyncpg.Connection, batch: list[tuple[int, str, bytes]]) -> tuple[int, int]:
    """Write a batch as a version 2 replica does: the four-argument call."""
    row = await conn.fetchrow(
        "SELECT first_sequence, last_sequence FROM tuco_write_batch($1, $2, $3, $4)",
        uuid.uuid4(),
        [t for t, _, _ in batch],
        [k.encode() for _, k, _ in batch],
        [v for _, _, v in batch],
    )
    return row[0], row[1]


def test_a_version_1_database_is_migrated_and_keeps_its_history(pg_dsn: str) -> None:
    """Replicas starting together on a v1 database migrate it once; its state loads and new writes follow its head."""

    async def main() -> None:
        await _make_v1(pg_dsn)
        replicas = [Replica(pg_dsn) for _ in range(4)]
        await asyncio.gather(*(replica.start() for replica in replicas))
        try:
            versions = await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY version")
            assert [r[0] for r in versions] == [1, 2, 3, 4, 5, 6, 7, sql.SCHEMA_VERSION] == [1, 2, 3, 4, 5, 6, 7, 8]
            for replica in replicas:
                assert replica.bootstrap == [
                    Event(2, EventType.PUT, "b", b"two", 2, 1),
                    Event(3, EventType.DELETE, "a"),
                ]
                assert replica.log.last_sequence == replica.store.last_sequence == 3
            event = await replicas[0].put("c", b"three")
            assert event == Event(4, EventType.PUT, "c", b"three")
            assert await state_entries(pg_dsn) == {"b": Entry(b"two", 2, 2, 1), "c": Entry(b"three", 4, 4, 1)}
            assert [r[0] for r in await query(pg_dsn, "SELECT sequence FROM tuco_head")] == [4]
        finally:
            for replica in replicas:
                await replica.log.aclose()

    run(main)


def test_a_version_2_database_gets_the_revisions_its_history_gives(pg_dsn: str) -> None:
    """Migrating v2 computes each key's create_revision and version from tuco_events, as a replay derives them."""

    async def main() -> None:
        await _make_v2(pg_dsn)
        replica = await Replica(pg_dsn).start()
        try:
            expected = {
                "a": Entry(b"a4", 7, 9, 2),  # deleted by 4, re-created by 7
                "b": Entry(b"b3", 2, 12, 3),
                "c": Entry(b"c2", 11, 11, 1),  # deleted and re-created within one batch
            }
            assert await replayed_entries(pg_dsn) == expected
            assert await state_entries(pg_dsn) == expected
            assert replica.bootstrap == [
                Event(9, EventType.PUT, "a", b"a4", 7, 2),
                Event(11, EventType.PUT, "c", b"c2", 11, 1),
                Event(12, EventType.PUT, "b", b"b3", 2, 3),
                Event(14, EventType.DELETE, "d"),  # the head
            ]
            assert entries_of(replica.store) == expected
            assert (await replica.put("a", b"a5", Precondition(9))).sequence == 15
            assert replica.store.entry("a") == Entry(b"a5", 7, 15, 3)
            assert await state_entries(pg_dsn) == {**expected, "a": Entry(b"a5", 7, 15, 3)}
        finally:
            await replica.log.aclose()

    run(main)


def test_a_key_whose_history_was_pruned_starts_from_its_last_write(pg_dsn: str) -> None:
    """Events deleted below a position (as the README allows): a key with none left gets its last write's revision."""

    async def main() -> None:
        await _make_v2(pg_dsn)
        await query(pg_dsn, "DELETE FROM tuco_events WHERE sequence <= 9")
        replica = await Replica(pg_dsn).start()
        await replica.log.aclose()
        assert await state_entries(pg_dsn) == {
            "a": Entry(b"a4", 9, 9, 1),  # no event of "a" is left: its last write is all there is
            "b": Entry(b"b3", 12, 12, 1),  # of "b" only sequence 12 is left
            "c": Entry(b"c2", 11, 11, 1),
        }
        assert entries_of(replica.store) == await state_entries(pg_dsn)

    run(main)


def test_a_version_2_writer_keeps_writing_during_the_upgrade(pg_dsn: str) -> None:
    """In a rolling upgrade, a v2 replica's call (holding the head lock) orders a v3 write and keeps revisions right."""

    async def main() -> None:
        await _make_v2(pg_dsn)
        replica = await Replica(pg_dsn).start()
        old = await asyncpg.connect(pg_dsn)
        try:
            transaction = old.transaction()
            await transaction.start()
            assert await _v2_call(old, [(1, "b", b"b4"), (2, "a", b""), (1, "a", b"old")]) == (15, 17)
            write = asyncio.ensure_future(replica.put("a", b"new", Precondition(17)))
            while not await query(pg_dsn, _WAITING_FOR_A_LOCK):  # the new write queues behind the old writer
                await asyncio.sleep(0.02)
            assert not write.done()
            await transaction.commit()
            assert await write == Event(18, EventType.PUT, "a", b"new")
            assert replica.applied == [15, 16, 17, 18]
            expected = {
                "a": Entry(b"new", 17, 18, 2),
                "b": Entry(b"b4", 2, 15, 4),
                "c": Entry(b"c2", 11, 11, 1),
            }
            assert entries_of(replica.store) == await state_entries(pg_dsn) == await replayed_entries(pg_dsn)
            assert entries_of(replica.store) == expected
        finally:
            await old.close()
            await replica.log.aclose()

    run(main)


def test_a_version_2_write_waiting_through_the_migration_is_refused_and_stores_nothing(pg_dsn: str) -> None:
    """A v2 call already inside the old function when the migration runs fails unstored; the next call succeeds."""

    async def main() -> None:
        await _make_v2(pg_dsn)
        holder = await asyncpg.connect(pg_dsn)
        old = await asyncpg.connect(pg_dsn, server_settings={"application_name": "tuco-v2"})
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT 1 FROM tuco_head WHERE id = 1 FOR UPDATE")
            starting = asyncio.ensure_future(Replica(pg_dsn).start())
            while not await query(pg_dsn, _WAITING_FOR_A_LOCK):  # the migration waits for the head lock first
                await asyncio.sleep(0.02)
            late = asyncio.ensure_future(_v2_call(old, [(1, "late", b"x")]))
            while not await query(pg_dsn, _WAITING_FOR_A_LOCK.replace("'tuco'", "'tuco-v2'")):  # ...then the v2 call
                await asyncio.sleep(0.02)
            await transaction.commit()
            replica = await starting
            with pytest.raises(asyncpg.NotNullViolationError):
                await late
            assert [r[0] for r in await query(pg_dsn, "SELECT max(sequence) FROM tuco_events")] == [14]
            assert await _v2_call(old, [(1, "late", b"x")]) == (15, 15)
            assert (await state_entries(pg_dsn))["late"] == Entry(b"x", 15, 15, 1)
            await replica.log.catch_up()
            assert entries_of(replica.store) == await state_entries(pg_dsn) == await replayed_entries(pg_dsn)
            await replica.log.aclose()
        finally:
            await holder.close()
            await old.close()

    run(main)


def test_a_version_1_writer_is_refused_after_the_upgrade(pg_dsn: str) -> None:
    """A v1 replica's direct insert, which would leave revisions stale, fails once v3 is installed."""

    async def main() -> None:
        await _make_v1(pg_dsn)
        replica = await Replica(pg_dsn).start()
        await replica.log.aclose()
        with pytest.raises(asyncpg.NotNullViolationError):
            await query(pg_dsn, "INSERT INTO tuco_state (key, value, sequence) VALUES ('old', 'v1', 4)")

    run(main)


def test_a_newer_schema_is_refused(pg_dsn: str) -> None:
    """A database migrated by a later build is not touched: start-up fails naming both versions."""

    async def main() -> None:
        await _make_v1(pg_dsn)
        await query(pg_dsn, "INSERT INTO tuco_schema (version) VALUES (9)")
        replica = Replica(pg_dsn)
        with pytest.raises(LogFormatError) as caught:
            await replica.log.open()
        await replica.log.aclose()
        assert str(caught.value) == "the database holds tuco schema version 9; this build reads version 8"
        assert [r[0] for r in await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY 1")] == [1, 9]

    run(main)


_TUCO_RELATIONS = """SELECT relname FROM pg_class
    WHERE relnamespace = current_schema()::regnamespace AND relname LIKE 'tuco%' ORDER BY relname"""


def test_another_programs_table_is_named_and_the_database_left_as_it_was(pg_dsn: str) -> None:
    """A foreign tuco_tokens on an empty database: start-up names it, creates nothing, and says so again next time."""

    async def main() -> None:
        await query(pg_dsn, "CREATE TABLE tuco_tokens (name text PRIMARY KEY, owner text NOT NULL)")
        await query(pg_dsn, "INSERT INTO tuco_tokens VALUES ('theirs', 'another program')")
        for _ in range(2):  # the second start meets the same database, not a half-made one
            replica = Replica(pg_dsn)
            with pytest.raises(LogFormatError) as caught:
                await replica.log.open()
            await replica.log.aclose()
            assert str(caught.value) == (
                "the database already has a table tuco_tokens that tuco did not create (another program's?); "
                "nothing was changed: give tuco a database or schema of its own"
            )
            assert [r[0] for r in await query(pg_dsn, _TUCO_RELATIONS)] == ["tuco_tokens", "tuco_tokens_pkey"]
        assert [tuple(r) for r in await query(pg_dsn, "SELECT * FROM tuco_tokens")] == [("theirs", "another program")]

    run(main)


def test_a_migration_that_meets_a_foreign_table_leaves_the_old_version_whole(pg_dsn: str) -> None:
    """A v2 database beside another program's tuco_leases: refused by name, still v2 with its history and columns."""

    async def main() -> None:
        await _make_v2(pg_dsn)
        await query(pg_dsn, "CREATE TABLE tuco_leases (holder text)")
        before = await query(pg_dsn, "SELECT attname FROM pg_attribute WHERE attrelid = 'tuco_state'::regclass")
        replica = Replica(pg_dsn)
        with pytest.raises(LogFormatError) as caught:
            await replica.log.open()
        await replica.log.aclose()
        assert "a table tuco_leases that tuco did not create" in str(caught.value)
        assert [r[0] for r in await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY 1")] == [1, 2]
        after = await query(pg_dsn, "SELECT attname FROM pg_attribute WHERE attrelid = 'tuco_state'::regclass")
        assert sorted(r[0] for r in after) == sorted(r[0] for r in before)
        assert [r[0] for r in await query(pg_dsn, "SELECT max(sequence) FROM tuco_events")] == [14]
        assert [r[0] for r in await query(pg_dsn, "SELECT to_regclass('tuco_tokens') IS NULL")] == [True]

    run(main)


def test_a_foreign_tuco_schema_table_is_named(pg_dsn: str) -> None:
    """A tuco_schema table without tuco's version column is another program's: named, nothing created."""

    async def main() -> None:
        await query(pg_dsn, "CREATE TABLE tuco_schema (label text)")
        replica = Replica(pg_dsn)
        with pytest.raises(LogFormatError) as caught:
            await replica.log.open()
        await replica.log.aclose()
        assert "a table tuco_schema that tuco did not create" in str(caught.value)
        assert [r[0] for r in await query(pg_dsn, _TUCO_RELATIONS)] == ["tuco_schema"]

    run(main)
