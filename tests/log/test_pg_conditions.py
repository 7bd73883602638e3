"""Conditional writes on the PostgreSQL log: decided inside the database, in log order, atomically with the write."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Sequence

import pytest

from tests.fix_db import entries_of, replayed_entries, state_entries
from tests.fix_proxy import Proxy
from tests.log.test_postgres_log import Replica, after_the_followers_first_look, query, run
from tuco.core.events import ABSENT, EXISTS, Entry, Event, EventType, Precondition
from tuco.errors import PreconditionFailedError
from tuco.log import _pg_schema as sql
from tuco.log.batching import Mutation, Outcome, sequence_batch

pytestmark = pytest.mark.postgres

Verdict = tuple[str, str, int]  # ("event", key, sequence) or ("refused", key, current revision)


def verdict(outcome: Outcome | BaseException) -> Verdict:
    """An outcome in a comparable form (exceptions compare by identity)."""
    if isinstance(outcome, PreconditionFailedError):
        return ("refused", outcome.key, outcome.current)
    if isinstance(outcome, Event):
        return ("event", outcome.key, outcome.sequence)
    raise AssertionError(f"unexpected outcome {outcome!r}")


def submit(replica: Replica, batch: Sequence[Mutation]) -> list[Awaitable[Event]]:
    """Queue every mutation in the same tick, so an idle log commits them as one batch."""
    log = replica.log
    return [
        log.write_put(m.key, m.value, m.precondition)
        if m.type is EventType.PUT
        else log.write_delete(m.key, m.precondition)
        for m in batch
    ]


async def outcomes_of(replica: Replica, batch: Sequence[Mutation]) -> list[Verdict]:
    return [verdict(o) for o in await asyncio.gather(*submit(replica, batch), return_exceptions=True)]


async def batches(dsn: str) -> list[tuple[int, int, list[int] | None, list[int] | None]]:
    rows = await query(
        dsn, "SELECT first_sequence, last_sequence, refused, refused_revisions FROM tuco_batches ORDER BY 1, 2"
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def put(key: str, value: bytes, precondition: Precondition | None = None) -> Mutation:
    return Mutation(EventType.PUT, key, value, precondition)


def delete(key: str, precondition: Precondition | None = None) -> Mutation:
    return Mutation(EventType.DELETE, key, b"", precondition)


def test_each_kind_of_precondition_is_decided_by_the_database(pg_dsn: str) -> None:
    """Absent, exists and a revision, on PUT and DELETE: refusals name the revision and take no sequence."""

    async def main() -> None:
        replica = await Replica(pg_dsn).start()
        log = replica.log
        try:
            assert await log.write_put("k", b"1", ABSENT) == Event(1, EventType.PUT, "k", b"1")
            with pytest.raises(PreconditionFailedError) as absent:
                await log.write_put("k", b"again", ABSENT)
            assert (absent.value.key, absent.value.current) == ("k", 1)
            assert str(absent.value) == "the condition did not hold: the key is at revision 1"
            with pytest.raises(PreconditionFailedError) as exists:
                await log.write_put("nobody", b"x", EXISTS)
            assert (exists.value.key, exists.value.current) == ("nobody", 0)
            assert str(exists.value) == "the condition did not hold: the key does not exist"
            assert await log.write_put("k", b"2", EXISTS) == Event(2, EventType.PUT, "k", b"2")
            with pytest.raises(PreconditionFailedError) as stale:
                await log.write_put("k", b"lost", Precondition(1))
            assert (stale.value.key, stale.value.current) == ("k", 2)
            assert await log.write_put("k", b"3", Precondition(2)) == Event(3, EventType.PUT, "k", b"3")
            with pytest.raises(PreconditionFailedError) as stale_delete:
                await log.write_delete("k", Precondition(2))
            assert (stale_delete.value.key, stale_delete.value.current) == ("k", 3)
            with pytest.raises(PreconditionFailedError) as delete_absent:
                await log.write_delete("nobody", EXISTS)
            assert (delete_absent.value.key, delete_absent.value.current) == ("nobody", 0)
            assert await log.write_delete("k", Precondition(3)) == Event(4, EventType.DELETE, "k", b"")
            assert await log.write_put("k", b"new life", ABSENT) == Event(5, EventType.PUT, "k", b"new life")

            rows = await query(pg_dsn, "SELECT sequence, type, value FROM tuco_events ORDER BY sequence")
            assert [(r[0], r[1], bytes(r[2])) for r in rows] == [
                (1, 1, b"1"),
                (2, 1, b"2"),
                (3, 1, b"3"),
                (4, 2, b""),
                (5, 1, b"new life"),
            ]
            assert [r[0] for r in await query(pg_dsn, "SELECT sequence FROM tuco_head")] == [5]
            assert await batches(pg_dsn) == [  # a refused batch records its verdict and moves nothing
                (1, 1, None, None),
                (2, 1, [1], [1]),
                (2, 1, [1], [0]),
                (2, 2, None, None),
                (3, 2, [1], [2]),
                (3, 3, None, None),
                (4, 3, [1], [3]),
                (4, 3, [1], [0]),
                (4, 4, None, None),
                (5, 5, None, None),
            ]
            assert entries_of(replica.store) == {"k": Entry(b"new life", 5, 5, 1)}
            assert await state_entries(pg_dsn) == await replayed_entries(pg_dsn) == entries_of(replica.store)
            assert replica.applied == [1, 2, 3, 4, 5]
        finally:
            await log.aclose()

    run(main)


def test_conditions_in_one_batch_see_the_writes_before_them(pg_dsn: str) -> None:
    """In one batch each condition is judged after the batch's earlier mutations, exactly as a one-writer log does."""

    async def main() -> None:
        replica = await Replica(pg_dsn).start()
        try:
            batch = [
                put("a", b"1", ABSENT),  # 1
                put("a", b"no", ABSENT),  # refused: 1 is earlier in this batch
                put("a", b"2", Precondition(1)),  # 2
                delete("a", Precondition(1)),  # refused: now at 2
                delete("a", EXISTS),  # 3
                put("a", b"no", EXISTS),  # refused: deleted by 3
                put("b", b"1"),  # 4
                put("b", b"2", Precondition(4)),  # 5: a revision from this very batch
                put("a", b"3", ABSENT),  # 6
            ]
            got = await outcomes_of(replica, batch)
            assert got == [
                ("event", "a", 1),
                ("refused", "a", 1),
                ("event", "a", 2),
                ("refused", "a", 2),
                ("event", "a", 3),
                ("refused", "a", 0),
                ("event", "b", 4),
                ("event", "b", 5),
                ("event", "a", 6),
            ]
            assert got == [verdict(o) for o in sequence_batch(batch, 1, lambda key: 0)]
            assert await batches(pg_dsn) == [(1, 6, [2, 4, 6], [1, 2, 0])]
            expected = {"a": Entry(b"3", 6, 6, 1), "b": Entry(b"2", 4, 5, 2)}
            assert entries_of(replica.store) == expected
            assert await state_entries(pg_dsn) == await replayed_entries(pg_dsn) == expected
        finally:
            await replica.log.aclose()

    run(main)


def test_random_conditional_batches_match_the_one_writer_decision(pg_dsn: str) -> None:
    """Random batches over three keys get the outcomes sequence_batch computes; a restart keeps the revisions."""
    rng = random.Random(7)
    keys = ["x", "y", "z"]

    def condition(current: int, head: int) -> Precondition | None:
        return rng.choice(
            [None, ABSENT, EXISTS, Precondition(current or 1), Precondition(max(1, current - 1)), Precondition(head)]
        )

    async def main() -> None:
        replica = await Replica(pg_dsn).start()
        try:
            for round_ in range(40):
                store = replica.store
                head = store.last_sequence
                batch = []
                for i in range(rng.randint(1, 12)):
                    key = rng.choice(keys)
                    precondition = condition(store.mod_revision(key), head + 1 + i // 2)
                    if rng.random() < 0.3:
                        batch.append(delete(key, precondition))
                    else:
                        batch.append(put(key, f"{round_}-{i}".encode(), precondition))
                expected = [verdict(o) for o in sequence_batch(batch, head + 1, store.mod_revision)]
                assert await outcomes_of(replica, batch) == expected, f"round {round_}"
                assert await state_entries(pg_dsn) == entries_of(replica.store), f"round {round_}"
            assert await state_entries(pg_dsn) == await replayed_entries(pg_dsn) == entries_of(replica.store)
            refused = sum(len(b[2] or ()) for b in await batches(pg_dsn))
            assert refused > 20  # the conditions really were exercised both ways
        finally:
            await replica.log.aclose()
        restarted = await Replica(pg_dsn).start()  # bootstrap from tuco_state: the same revisions
        await restarted.log.aclose()
        assert entries_of(restarted.store) == await replayed_entries(pg_dsn) == entries_of(replica.store)

    run(main)


def test_a_refusal_names_a_write_the_replica_has_already_applied(pg_dsn: str) -> None:
    """A replica that has not heard of another's writes is refused with their revision, and holds it on return."""

    async def main() -> None:
        deaf = await Replica(pg_dsn, use_notify=False, poll_interval=60.0).start()
        other = await Replica(pg_dsn).start()
        try:
            await other.put("k", b"1")
            await other.put("k", b"2")
            assert "k" not in deaf.store
            with pytest.raises(PreconditionFailedError) as caught:
                await deaf.put("k", b"mine", ABSENT)
            assert caught.value.current == 2
            assert deaf.store.entry("k") == Entry(b"2", 1, 2, 2)
            assert deaf.applied == [1, 2]
        finally:
            await deaf.log.aclose()
            await other.log.aclose()

    run(main)


def test_two_replicas_racing_compare_and_swap_on_one_counter_lose_no_increment(pg_dsn: str) -> None:
    """Read-increment-write loops with If-Match on two replicas: the counter equals the successes, never both win."""
    workers, increments = 4, 15

    async def main() -> None:
        # Neither hears the other at once: each learns of the other's writes only by being refused.
        replicas = [await Replica(pg_dsn, use_notify=False, poll_interval=60.0).start() for _ in range(2)]
        successes: list[list[tuple[int, int, int]]] = [[], []]  # (sequence, value written, revision expected)
        refusals: list[list[tuple[int, int]]] = [[], []]  # (revision expected, current revision in the refusal)
        try:
            assert (await replicas[0].put("counter", b"0", ABSENT)).sequence == 1
            await replicas[1].log.catch_up()

            async def worker(side: int) -> None:
                replica = replicas[side]
                done = 0
                while done < increments:
                    entry = replica.store.entry("counter")
                    value = int(entry.value) + 1
                    try:
                        event = await replica.put("counter", str(value).encode(), Precondition(entry.mod_revision))
                    except PreconditionFailedError as exc:
                        refusals[side].append((entry.mod_revision, exc.current))
                        assert replica.store.mod_revision("counter") >= exc.current  # the retry reads it
                        continue
                    successes[side].append((event.sequence, value, entry.mod_revision))
                    done += 1

            await asyncio.gather(*(worker(side) for side in (0, 1) for _ in range(workers)))

            total = 2 * workers * increments
            wins = sorted(success for side in successes for success in side)
            assert len(wins) == total
            # Each success wrote one more than the success before it in the log, having expected exactly that one.
            assert [value for _, value, _ in wins] == list(range(1, total + 1))
            assert [expected for _, _, expected in wins] == [1] + [sequence for sequence, _, _ in wins[:-1]]
            state = await state_entries(pg_dsn)
            assert state == {"counter": Entry(str(total).encode(), 1, wins[-1][0], total + 1)}
            assert state == await replayed_entries(pg_dsn)
            for replica in replicas:
                await replica.log.catch_up()
                assert entries_of(replica.store) == state
            # Every refusal carries a revision that was the counter's at some point, later than the one expected...
            written = {1} | {sequence for sequence, _, _ in wins}
            for expected, current in (refusal for side in refusals for refusal in side):
                assert current in written
                assert current > expected
            # ...and, per recorded batch, the one current when it was decided: the head before it, or its own writes.
            for first, last, _, revisions in await batches(pg_dsn):
                for current in revisions or ():
                    assert first - 1 <= current <= last
            # A replica lost to the other (the first round always does: all eight workers expected revision 1).
            mine = [{sequence for sequence, _, _ in side} for side in successes]
            assert any(current in mine[1 - side] for side in (0, 1) for _, current in refusals[side])
        finally:
            for replica in replicas:
                await replica.log.aclose()

    run(main)


def test_a_lost_reply_during_compare_and_swap_returns_the_first_outcome(pg_dsn: str, pg_proxy: Proxy) -> None:
    """The reply to a conditional batch is lost: the retry returns its recorded outcome, refusals included, once."""

    async def main() -> None:
        replica = await Replica(pg_proxy.dsn, write_timeout=10.0).start()
        try:
            assert (await replica.put("counter", b"1", ABSENT)).sequence == 1
            pg_proxy.drop_reply_to(sql.WRITE_BATCH.lstrip().encode())
            got = await outcomes_of(
                replica,
                [
                    put("counter", b"2", Precondition(1)),
                    put("counter", b"2 again", Precondition(1)),
                    delete("nobody", EXISTS),
                ],
            )
            assert pg_proxy.replies_dropped == 1
            assert replica.log.batches_found_committed == 1
            assert got == [("event", "counter", 2), ("refused", "counter", 2), ("refused", "nobody", 0)]
            assert (await replica.put("counter", b"3", Precondition(2))).sequence == 3
            rows = await query(pg_dsn, "SELECT sequence, value FROM tuco_events ORDER BY sequence")
            assert [(r[0], bytes(r[1])) for r in rows] == [(1, b"1"), (2, b"2"), (3, b"3")]
            assert await batches(pg_dsn) == [(1, 1, None, None), (2, 2, [2, 3], [2, 0]), (3, 3, None, None)]
            assert replica.applied == [1, 2, 3]
            assert entries_of(replica.store) == {"counter": Entry(b"3", 1, 3, 3)}
        finally:
            await replica.log.aclose()

    run(main)


def test_a_conditional_write_is_one_statement_per_batch(pg_proxy: Proxy) -> None:
    """Conditional batches, written or refused, cost one round trip each: the write function and nothing else."""

    async def main() -> None:
        replica = await Replica(pg_proxy.dsn, use_notify=False, poll_interval=60.0).start()
        try:
            await replica.put("warm", b"up")  # connects the pool and prepares the statement
            await after_the_followers_first_look(pg_proxy)
            pg_proxy.executed.clear()
            for i in range(10):
                event = await replica.put("k", b"v", Precondition(replica.store.mod_revision("k")) if i else ABSENT)
                assert event.sequence == i + 2
                with pytest.raises(PreconditionFailedError):
                    await replica.put("k", b"stale", Precondition(1))
            assert pg_proxy.executed == [sql.WRITE_BATCH] * 20
        finally:
            await replica.log.aclose()

    run(main)
