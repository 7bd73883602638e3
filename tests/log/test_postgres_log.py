"""The PostgreSQL transaction log against a real server: ordering, bootstrap, replicas, faults."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.fix_db import entries_of, replayed_entries
from tests.fix_proxy import Proxy
from tuco.core.events import Event, EventType, Precondition
from tuco.core.store import Store
from tuco.errors import LogFailedError, LogUnavailableError
from tuco.log import _pg_follower, postgres
from tuco.log import _pg_schema as sql
from tuco.log._pg_failover import READ_PRIMARY_HEAD
from tuco.log.postgres import PostgresTransactionLog
from tuco.testing import RecordingSink

pytestmark = pytest.mark.postgres


class Replica:
    """One log instance with its own store, as one tuco process would have."""

    def __init__(self, dsn: str | None, **options: Any) -> None:
        self.log = PostgresTransactionLog(dsn, **options)
        self.store = Store()
        self.bootstrap: list[Event] = []
        self.applied: list[int] = []

    def apply(self, event: Event) -> None:
        self.applied.append(event.sequence)
        self.store.apply(event)

    def mod_revision(self, key: str) -> int:
        return self.store.mod_revision(key)

    def key_expiry(self, key: str) -> int | None:
        return self.store.key_expiry(key)

    def lease(self, id: int) -> tuple[int, int] | None:
        return self.store.lease(id)

    def record(self, key: str) -> tuple[bytes, int, int, int] | None:
        return self.store.record(key)

    def keys_under(self, prefix: str) -> Iterator[str]:
        return self.store.keys_under(prefix)

    async def start(self) -> Replica:
        async for batch in self.log.read_events():
            self.bootstrap.extend(batch)
            for event in batch:
                self.store.apply(event)
        await self.log.run(self)
        return self

    async def put(self, key: str, value: bytes, precondition: Precondition | None = None) -> Event:
        return await self.log.write_put(key, value, precondition)


async def query(dsn: str, statement: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def after_the_followers_first_look(proxy: Proxy) -> None:
    """Until the follower (started with the log) has read the head once: its first look comes when its own
    connection is up, which under load can be after the first writes, one statement more in their count."""
    await wait_until(lambda: READ_PRIMARY_HEAD in proxy.executed)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())  # type: ignore[arg-type]


@pytest.fixture
def unused_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ODD_KEYS = {
    "plain": b"value",
    "with space": b"\x00\xff\x00binary",
    "new\nline": b"",
    "emoji 🦎": "ünïcödé".encode(),
    "tab\tand/slash?": bytes(range(256)),
}


def test_round_trip_and_replay_in_a_fresh_instance(pg_dsn: str) -> None:
    """Odd keys, binary and empty values and a delete survive a restart exactly."""

    async def main() -> None:
        first = await Replica(pg_dsn).start()
        try:
            events = [await first.put(key, value) for key, value in ODD_KEYS.items()]
            deleted = await first.log.write_delete("plain")
        finally:
            await first.log.aclose()
        assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
        assert deleted == Event(6, EventType.DELETE, "plain", b"")
        expected = {k: v for k, v in ODD_KEYS.items() if k != "plain"}
        assert first.store.snapshot() == expected

        second = await Replica(pg_dsn).start()
        await second.log.aclose()
        assert second.store.snapshot() == expected
        assert second.bootstrap == [
            *(Event(e.sequence, e.type, e.key, e.value, e.sequence, 1) for e in events[1:]),
            Event(6, EventType.DELETE, "plain"),  # the head: the replayed revision is 6, not 5
        ]
        assert second.log.last_sequence == second.store.last_sequence == 6
        rows = await query(pg_dsn, "SELECT sequence, type, key, value FROM tuco_events ORDER BY sequence")
        assert [(r[0], r[1], bytes(r[2]).decode(), bytes(r[3])) for r in rows] == [
            *[(e.sequence, 1, e.key, e.value) for e in events],
            (6, 2, "plain", b""),
        ]

    run(main)


def test_bootstrap_reads_the_state_not_the_history(pg_dsn: str) -> None:
    """1000 puts over 10 keys bootstrap as exactly 10 events, and the tail follows from there."""

    async def main() -> None:
        writer = await Replica(pg_dsn).start()
        for round_ in range(10):
            await asyncio.gather(*(writer.put(f"k{i % 10}", f"{round_}-{i}".encode()) for i in range(100)))
        reader = await Replica(pg_dsn).start()
        try:
            rows = await query(
                pg_dsn, "SELECT DISTINCT ON (key) key, value, sequence FROM tuco_events ORDER BY key, sequence DESC"
            )
            # k0..k9 were first written by sequences 1..10 and each written 100 times since.
            expected = sorted(
                Event(r[2], EventType.PUT, bytes(r[0]).decode(), bytes(r[1]), int(bytes(r[0])[1:]) + 1, 100)
                for r in rows
            )
            assert reader.bootstrap == expected
            assert len(reader.bootstrap) == 10
            assert entries_of(reader.store) == entries_of(writer.store) == await replayed_entries(pg_dsn)
            assert reader.log.last_sequence == 1000
            tail = await writer.put("k3", b"tail")
            assert tail.sequence == 1001
            await wait_until(lambda: reader.store.last_sequence == 1001)
            assert reader.applied == [1001]
            assert reader.store.get("k3") == b"tail"
        finally:
            await writer.log.aclose()
            await reader.log.aclose()

    run(main)


def test_a_bootstrap_ends_at_the_head_when_the_head_is_a_delete(pg_dsn: str) -> None:
    """The state before a trailing DELETE is not labelled with an older revision: the DELETE is replayed last."""

    async def main() -> None:
        writer = await Replica(pg_dsn).start()
        try:
            await writer.put("a", b"1")
            await writer.put("b", b"2")
            await writer.log.write_delete("a")
            reader = await Replica(pg_dsn).start()
            await reader.log.aclose()
            assert reader.bootstrap == [Event(2, EventType.PUT, "b", b"2", 2, 1), Event(3, EventType.DELETE, "a")]
            assert reader.store.last_sequence == writer.store.last_sequence == 3
            assert reader.store.page("", limit=10) == writer.store.page("", limit=10)
            await writer.put("b", b"3")  # the head is a PUT again: nothing after the state rows
            again = await Replica(pg_dsn).start()
            await again.log.aclose()
            assert again.bootstrap == [Event(4, EventType.PUT, "b", b"3", 2, 2)]
            assert again.store.last_sequence == 4
        finally:
            await writer.log.aclose()

    run(main)


def test_two_replicas_converge_to_the_last_event_per_key(pg_dsn: str) -> None:
    """Concurrent writes to the same keys from two replicas leave both with the log's final state."""

    async def main() -> None:
        a, b = await Replica(pg_dsn).start(), await Replica(pg_dsn).start()
        try:
            await asyncio.gather(
                *(a.put(f"key{i % 7}", f"a{i}".encode()) for i in range(200)),
                *(b.put(f"key{i % 7}", f"b{i}".encode()) for i in range(200)),
            )
            await a.log.catch_up()
            await b.log.catch_up()
            rows = await query(
                pg_dsn, "SELECT DISTINCT ON (key) key, value FROM tuco_events ORDER BY key, sequence DESC"
            )
            final = {bytes(r[0]).decode(): bytes(r[1]) for r in rows}
            state = await query(pg_dsn, "SELECT key, value FROM tuco_state")
            assert {bytes(r[0]).decode(): bytes(r[1]) for r in state} == final
            assert a.store.snapshot() == final
            assert b.store.snapshot() == final
            assert a.store.last_sequence == b.store.last_sequence == 400
        finally:
            await a.log.aclose()
            await b.log.aclose()

    run(main)


@pytest.mark.parametrize("use_notify", [True, False])
def test_a_follower_applies_every_sequence_once_in_order(pg_dsn: str, use_notify: bool) -> None:
    """With three writers racing, a follower applies exactly 1..N with no gap or repeat."""

    async def main() -> None:
        follower = await Replica(pg_dsn, use_notify=use_notify, poll_interval=0.05).start()
        writers = [await Replica(pg_dsn).start() for _ in range(3)]
        try:
            await asyncio.gather(*(w.put(f"w{n}-{i}", b"x") for n, w in enumerate(writers) for i in range(150)))
            await wait_until(lambda: follower.store.last_sequence == 450)
            assert follower.applied == list(range(1, 451))
            for writer in writers:
                assert sorted(set(writer.applied)) == writer.applied
            assert len(follower.store) == 450
        finally:
            for replica in (follower, *writers):
                await replica.log.aclose()

    run(main)


def test_terminated_connections_lose_no_acknowledged_write(pg_dsn: str) -> None:
    """Killing every backend mid-burst: acknowledged writes are all stored once, and following resumes."""

    async def main() -> None:
        writer = await Replica(pg_dsn, write_timeout=10.0).start()
        other = await Replica(pg_dsn, poll_interval=0.05).start()
        acked: dict[str, int] = {}
        failed: list[str] = []

        killing = asyncio.Event()

        async def put_many(worker: int) -> None:
            i = 0
            while not killing.is_set():
                i += 1
                key = f"burst{worker}-{i}"
                try:
                    acked[key] = (await writer.put(key, key.encode())).sequence
                except LogUnavailableError:
                    failed.append(key)

        kills: list[int] = []

        async def kill() -> None:
            for _ in range(5):
                await asyncio.sleep(0.1)
                rows = await query(
                    pg_dsn,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'tuco'",
                )
                kills.append(len(rows))
            killing.set()

        try:
            await asyncio.gather(kill(), *(put_many(w) for w in range(20)))
            assert max(kills) >= 2  # real backends died (a round may find some mid-reconnect)
            rows = await query(pg_dsn, "SELECT sequence, key FROM tuco_events ORDER BY sequence")
            stored = {bytes(r[1]).decode(): r[0] for r in rows}
            assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
            assert len(stored) == len(rows)  # no key (each written once) stored twice
            assert {k: stored[k] for k in acked} == acked
            assert failed == []  # retries on a new connection hid every termination from the writers
            assert set(stored) == set(acked)
            after = await writer.put("after", b"ok")
            await wait_until(lambda: other.store.last_sequence == after.sequence)
            assert other.store.snapshot() == {**{k: k.encode() for k in stored}, "after": b"ok"}
            assert writer.log.failure is None
        finally:
            await writer.log.aclose()
            await other.log.aclose()

    run(main)


def test_a_write_whose_reply_is_lost_is_found_committed_and_applied_once(pg_dsn: str, pg_proxy: Proxy) -> None:
    """The reply to the committing write statement is lost: the retry finds the batch committed and reuses its range."""

    async def main() -> None:
        replica = await Replica(pg_proxy.dsn, write_timeout=10.0).start()
        try:
            await replica.put("first", b"1")
            pg_proxy.drop_reply_to(sql.WRITE_BATCH.lstrip().encode())
            event = await replica.put("second", b"2")
            assert pg_proxy.replies_dropped == 1
            assert replica.log.batches_found_committed == 1
            assert event == Event(2, EventType.PUT, "second", b"2")
            assert replica.applied == [1, 2]
            assert (await replica.put("third", b"3")).sequence == 3
            rows = await query(pg_dsn, "SELECT sequence, key FROM tuco_events ORDER BY sequence")
            assert [(r[0], bytes(r[1])) for r in rows] == [(1, b"first"), (2, b"second"), (3, b"third")]
            batches = await query(pg_dsn, "SELECT first_sequence, last_sequence FROM tuco_batches ORDER BY 1")
            assert [tuple(r) for r in batches] == [(1, 1), (2, 2), (3, 3)]
        finally:
            await replica.log.aclose()

    run(main)


def test_a_lost_reply_mid_burst_repeats_no_sequence(pg_dsn: str, pg_proxy: Proxy) -> None:
    """Concurrent writers across a lost write reply: every write is stored exactly once, numbered without gaps."""

    async def main() -> None:
        replica = await Replica(pg_proxy.dsn, write_timeout=10.0).start()
        other = await Replica(pg_dsn).start()
        try:
            await replica.put("before", b"up")

            async def writer(worker: int) -> list[Event]:
                return [await replica.put(f"w{worker}-{i}", b"x") for i in range(20)]

            pg_proxy.drop_reply_to(sql.WRITE_BATCH.lstrip().encode())
            groups, _ = await asyncio.gather(asyncio.gather(*(writer(n) for n in range(10))), other.put("o", b"y"))
            events = [event for group in groups for event in group]
            assert pg_proxy.replies_dropped == 1
            assert replica.log.batches_found_committed == 1
            rows = await query(pg_dsn, "SELECT sequence, key FROM tuco_events ORDER BY sequence")
            assert [r[0] for r in rows] == list(range(1, 203))
            assert sorted(bytes(r[1]).decode() for r in rows) == sorted(
                ["before", "o", *(f"w{n}-{i}" for n in range(10) for i in range(20))]
            )
            stored = {bytes(r[1]).decode(): r[0] for r in rows}
            assert {e.key: e.sequence for e in events} == {k: v for k, v in stored.items() if k.startswith("w")}
            assert replica.applied == list(range(1, 203))
        finally:
            await replica.log.aclose()
            await other.log.aclose()

    run(main)


def test_a_write_is_one_statement_per_batch(pg_proxy: Proxy) -> None:
    """A caught-up replica writes each batch with one round trip: the write function, nothing before or after."""

    async def main() -> None:
        replica = await Replica(pg_proxy.dsn, use_notify=False, poll_interval=60.0).start()
        try:
            await replica.put("warm", b"up")  # connects the pool and prepares the statement
            await after_the_followers_first_look(pg_proxy)
            pg_proxy.executed.clear()
            for i in range(20):
                await replica.put(f"k{i}", b"v")
            assert pg_proxy.executed == [sql.WRITE_BATCH] * 20
        finally:
            await replica.log.aclose()

    run(main)


def test_a_write_applies_the_events_before_it_first(pg_dsn: str) -> None:
    """A replica that has not heard of others' writes applies them, in order, before its own write returns."""

    async def main() -> None:
        deaf = await Replica(pg_dsn, use_notify=False, poll_interval=60.0).start()
        other = await Replica(pg_dsn).start()
        try:
            for i in range(5):
                await other.put(f"other{i}", b"x")
            event = await deaf.put("mine", b"y")
            assert event == Event(6, EventType.PUT, "mine", b"y")
            assert deaf.applied == [1, 2, 3, 4, 5, 6]
            assert deaf.store.snapshot() == {**{f"other{i}": b"x" for i in range(5)}, "mine": b"y"}
        finally:
            await deaf.log.aclose()
            await other.log.aclose()

    run(main)


def test_old_batch_ids_are_pruned_and_recent_ones_kept(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every few batches the ids older than an hour are deleted; younger ones stay for retries."""
    monkeypatch.setattr(postgres, "_PRUNE_EVERY", 3)

    async def main() -> None:
        replica = await Replica(pg_dsn).start()
        try:
            await query(
                pg_dsn,
                "INSERT INTO tuco_batches (id, first_sequence, last_sequence, committed_at) VALUES "
                "('00000000-0000-0000-0000-000000000001', 0, 0, now() - interval '2 hours'),"
                "('00000000-0000-0000-0000-000000000002', 0, 0, now() - interval '61 minutes'),"
                "('00000000-0000-0000-0000-000000000003', 0, 0, now() - interval '59 minutes')",
            )
            for i in range(3):
                await replica.put(f"k{i}", b"v")
            rows = await query(pg_dsn, "SELECT id::text, first_sequence FROM tuco_batches ORDER BY first_sequence")
            assert [r[1] for r in rows] == [0, 1, 2, 3]
            assert rows[0][0] == "00000000-0000-0000-0000-000000000003"
        finally:
            await replica.log.aclose()

    run(main)


def test_a_follower_reaches_the_head_across_many_pages(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With pages of 7 events, a follower woken once, catch_up and bootstrap each go all the way to the head."""
    monkeypatch.setattr(postgres, "_CHUNK", 7)  # bootstrap's pages
    monkeypatch.setattr(_pg_follower, "_CHUNK", 7)  # the follower's and catch_up's

    async def main() -> None:
        follower = await Replica(pg_dsn, poll_interval=60.0).start()  # woken by NOTIFY only
        reader = await Replica(pg_dsn, use_notify=False, poll_interval=60.0).start()
        writer = await Replica(pg_dsn).start()
        try:
            await asyncio.gather(*(writer.put(f"k{i}", b"v") for i in range(100)))
            await wait_until(lambda: follower.store.last_sequence == 100)
            assert follower.applied == list(range(1, 101))
            await reader.log.catch_up()
            assert reader.applied == list(range(1, 101))
            fresh = await Replica(pg_dsn).start()
            await fresh.log.aclose()
            assert [e.sequence for e in fresh.bootstrap] == list(range(1, 101))
        finally:
            for replica in (follower, reader, writer):
                await replica.log.aclose()

    run(main)


def test_unreachable_database_at_start_fails_after_the_timeout(unused_port: int) -> None:
    """Nothing listening: LogFailedError after connect_timeout, without the password in it."""

    async def main() -> None:
        log = PostgresTransactionLog(f"postgresql://tuco:hunter2@127.0.0.1:{unused_port}/db", connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(LogFailedError) as caught:
            await log.run(RecordingSink())
        elapsed = time.monotonic() - started
        await log.aclose()
        assert 1.0 <= elapsed < 3.0
        assert str(caught.value) == (
            f"cannot reach the database postgresql://tuco:***@127.0.0.1:{unused_port}/db "
            "(gave up after 1.0 s; the cause is logged as database_unreachable)"
        )
        assert "database" not in log.describe()

    run(main)


def test_writes_during_an_outage_fail_then_resume(pg_proxy: Proxy) -> None:
    """While the database is away writes raise LogUnavailableError; once back they succeed again."""

    async def main() -> None:
        replica = await Replica(pg_proxy.dsn, write_timeout=1.0, poll_interval=0.05).start()
        try:
            assert (await replica.put("before", b"1")).sequence == 1
            pg_proxy.stop()
            with pytest.raises(LogUnavailableError) as write_error:
                await replica.put("during", b"2")
            assert str(write_error.value) == "the database is out of reach (writing); the cause is in tuco's log"
            with pytest.raises(LogUnavailableError) as read_error:
                await replica.log.catch_up()
            assert str(read_error.value) == "the database is out of reach (catching up); the cause is in tuco's log"
            assert replica.log.failure is not None
            assert replica.log.describe()["connected"] is False
            pg_proxy.start()
            assert (await replica.put("after", b"3")).sequence == 2
            await wait_until(lambda: replica.log.failure is None)
            assert replica.store.snapshot() == {"before": b"1", "after": b"3"}
            assert replica.log.describe()["connected"] is True
        finally:
            await replica.log.aclose()

    run(main)


def test_follower_resumes_after_its_connection_is_cut(pg_dsn: str, pg_proxy: Proxy) -> None:
    """A follower behind a cut connection reconnects and applies what it missed, once each."""

    async def main() -> None:
        follower = await Replica(pg_proxy.dsn, poll_interval=0.05).start()
        writer = await Replica(pg_dsn).start()
        try:
            await writer.put("one", b"1")
            await wait_until(lambda: follower.store.last_sequence == 1)
            pg_proxy.cut()
            await writer.put("two", b"2")
            await writer.put("three", b"3")
            await wait_until(lambda: follower.store.last_sequence == 3)
            assert follower.applied == [1, 2, 3]
        finally:
            await follower.log.aclose()
            await writer.log.aclose()

    run(main)


def test_a_follower_stopped_as_a_notify_wakes_it_stops(pg_dsn: str) -> None:
    """A stop that comes in the same turn as the wake-up of a NOTIFY ends the follower, and so the close.

    asyncio.wait_for (Python 3.11) returned the wake-up and dropped the cancel: the follower went on
    following, the log's close waited for it forever, and a replica stopped mid-burst took the SIGKILL.
    """

    async def main() -> None:
        replica = await Replica(pg_dsn, poll_interval=30.0).start()
        try:
            await replica.put("one", b"1")
            follower = replica.log._follower
            assert follower is not None
            await asyncio.sleep(0.2)  # idle, waiting for a NOTIFY or the next poll
            replica.log._wake.set()  # what a NOTIFY does; the wait's task wakes first in the next turn
            follower.cancel()
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(5.0):
                    await follower
            assert follower.cancelled()
        finally:
            async with asyncio.timeout(10.0):
                await replica.log.aclose()

    run(main)


def test_a_follower_that_ignores_its_stop_holds_the_close_for_a_bounded_time(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Should a follower ever outlive its cancel again, the close says so and goes on within _FOLLOWER_STOP."""
    monkeypatch.setattr(postgres, "_FOLLOWER_STOP", 0.5)

    async def main() -> None:
        replica = await Replica(pg_dsn).start()
        real = replica.log._follower
        assert real is not None
        real.cancel()
        release = asyncio.Event()

        async def stubborn() -> None:  # stands in for a follower whose loop swallowed the cancel
            while not release.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await release.wait()

        replica.log._follower = asyncio.get_running_loop().create_task(stubborn())
        started = time.monotonic()
        async with asyncio.timeout(10.0):  # not forever
            await replica.log.aclose()
        waited = time.monotonic() - started
        release.set()
        assert waited >= 0.5, waited  # it did give the follower its time
        assert "follower_did_not_stop" in capsys.readouterr().out

    run(main)


def test_catch_up_makes_another_replicas_write_visible(pg_dsn: str) -> None:
    """A replica that would not poll for a minute sees another's write right after catch_up."""

    async def main() -> None:
        reader = await Replica(pg_dsn, use_notify=False, poll_interval=60.0).start()
        polled = """SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = 'tuco' AND state = 'idle' AND query = $1"""
        while not await query(
            pg_dsn, polled, READ_PRIMARY_HEAD
        ):  # the reader's first poll is over; the next is 60 s away
            await asyncio.sleep(0.02)
        writer = await Replica(pg_dsn).start()
        try:
            await writer.put("fresh", b"value")
            assert "fresh" not in reader.store
            await reader.log.catch_up()
            assert reader.store.get("fresh") == b"value"
            assert reader.log.describe() == {
                "backend": "postgres",
                "last_sequence": 1,
                "lag_events": 0,
                "lag_seconds": 0.0,
                "connected": True,
            }
        finally:
            await reader.log.aclose()
            await writer.log.aclose()

    run(main)


def test_a_batch_touching_one_key_many_times_keeps_the_last(pg_dsn: str) -> None:
    """Puts and deletes of the same keys in one batch leave tuco_state at each key's last mutation."""

    async def main() -> None:
        replica = await Replica(pg_dsn).start()
        try:
            log = replica.log
            await asyncio.gather(
                log.write_put("a", b"1"),
                log.write_delete("a"),
                log.write_put("b", b"1"),
                log.write_put("b", b"2"),
                log.write_put("c", b"1"),
                log.write_delete("c"),
                log.write_put("c", b"3"),
            )
            state = await query(pg_dsn, "SELECT key, value, sequence FROM tuco_state ORDER BY key")
            assert [(bytes(r[0]), bytes(r[1]), r[2]) for r in state] == [(b"b", b"2", 4), (b"c", b"3", 7)]
            assert replica.store.snapshot() == {"b": b"2", "c": b"3"}
        finally:
            await replica.log.aclose()

    run(main)


def test_no_dsn_means_the_libpq_environment(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With dsn=None the PG* variables choose the server and database."""
    parts = urlsplit(pg_dsn)
    monkeypatch.setenv("PGHOST", parts.hostname or "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(parts.port or 5432))
    monkeypatch.setenv("PGUSER", parts.username or "postgres")
    monkeypatch.setenv("PGDATABASE", parts.path.lstrip("/"))

    async def main() -> None:
        replica = await Replica(None).start()
        try:
            await replica.put("env", b"yes")
        finally:
            await replica.log.aclose()
        rows = await query(pg_dsn, "SELECT key, value FROM tuco_state")
        assert [(bytes(r[0]), bytes(r[1])) for r in rows] == [(b"env", b"yes")]

    run(main)


def test_concurrent_schema_creation(pg_dsn: str) -> None:
    """Eight replicas starting at once on an empty database all succeed and create one schema."""

    async def main() -> None:
        replicas = [Replica(pg_dsn) for _ in range(8)]
        await asyncio.gather(*(r.start() for r in replicas))
        for replica in replicas:
            await replica.log.aclose()
        versions = await query(pg_dsn, "SELECT version FROM tuco_schema ORDER BY 1")
        assert [tuple(r) for r in versions] == [(1,), (2,), (3,), (4,), (5,), (6,), (7,), (8,)]
        assert [tuple(r) for r in await query(pg_dsn, "SELECT id, sequence FROM tuco_head")] == [(1, 0)]

    run(main)
