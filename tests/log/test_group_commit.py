"""The group commit's acknowledgements: one pass per batch, after the whole batch is applied."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest

from tuco.core.events import ABSENT, Event, EventType, Precondition
from tuco.core.store import Store
from tuco.errors import LogFailedError, PreconditionFailedError
from tuco.log.batching import GroupCommit, Mutation, Outcome, Written
from tuco.ports import CommitSink
from tuco.testing import MemoryLog


def put(log: MemoryLog, key: str, value: bytes, precondition: Precondition | None = None) -> Written:
    """``log.write_put``, as the Written the group commit hands back when its queue has room."""
    written = log.write_put(key, value, precondition)
    assert isinstance(written, Written)
    return written


async def started(store: CommitSink) -> MemoryLog:
    log = MemoryLog()
    await log.open()
    await log.run(store)
    return log


def test_every_callback_of_a_batch_sees_the_whole_batch_applied() -> None:
    """A write's callback runs once every event of its batch is in the store, and in submission order."""
    seen: list[tuple[int, int]] = []

    async def main() -> None:
        store = Store()
        log = await started(store)
        writes = [log.write_put(f"k{i}", b"v") for i in range(3)] + [log.write_delete("k0")]
        for written in writes:
            assert type(written) is Written
            written.add_done_callback(lambda w: seen.append((w.result().sequence, store.last_sequence)))
        await asyncio.sleep(0.01)
        assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
        await log.aclose()

    asyncio.run(main())


def test_a_write_is_settled_by_its_callback_without_a_future_and_still_awaitable() -> None:
    """The callback gets the Written itself (result, exception, done); awaiting it afterwards gives the same event."""

    async def main() -> None:
        log = await started(Store())
        written = log.write_put("k", b"v")
        assert isinstance(written, Written)
        assert not written.done()
        with pytest.raises(asyncio.InvalidStateError):
            written.result()
        got: list[Written] = []
        written.add_done_callback(got.append)
        with pytest.raises(RuntimeError, match="one done callback"):
            written.add_done_callback(got.append)
        await asyncio.sleep(0.01)
        assert got == [written]
        assert written._future is None  # nobody awaited it: no future was made
        assert (written.done(), written.cancelled(), written.exception()) == (True, False, None)
        assert written.result() == Event(1, EventType.PUT, "k", b"v")
        assert await written == Event(1, EventType.PUT, "k", b"v")
        await log.aclose()

    asyncio.run(main())


def test_a_refused_write_is_settled_with_its_error_and_the_rest_of_the_batch_is_stored() -> None:
    """A precondition that does not hold fails only its own write, awaited or called back."""

    async def main() -> None:
        log = await started(Store())
        first = put(log, "k", b"1", ABSENT)
        refused = put(log, "k", b"2", ABSENT)
        errors: list[BaseException | None] = []
        refused.add_done_callback(lambda w: errors.append(w.exception()))
        assert await first == Event(1, EventType.PUT, "k", b"1")
        with pytest.raises(PreconditionFailedError):
            await refused
        assert len(errors) == 1
        assert isinstance(errors[0], PreconditionFailedError)
        assert errors[0].current == 1
        await log.aclose()

    asyncio.run(main())


def test_a_failed_commit_fails_exactly_its_batch_through_callbacks_too() -> None:
    """Every write of a failed batch hears the failure; nothing of it is applied."""

    async def main() -> None:
        store = Store()
        log = await started(store)
        log.fail_next_commit = LogFailedError("disk on fire")
        writes = [put(log, f"k{i}", b"v") for i in range(3)]
        failures: list[str] = []
        for written in writes:
            written.add_done_callback(lambda w: failures.append(str(w.exception())))
        await asyncio.sleep(0.01)
        assert failures == ["disk on fire"] * 3
        assert store.last_sequence == 0
        with pytest.raises(LogFailedError, match="disk on fire"):
            log.write_put("after", b"v")
        await log.aclose()

    asyncio.run(main())


class GatedLog(MemoryLog):
    """A memory log whose commits wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        await self.gate.wait()
        return await super()._commit(batch)


def test_a_cancelled_awaiter_does_not_cancel_the_write() -> None:
    """Cancelling a task that awaits a write stops the wait; the write is still committed and applied."""

    async def main() -> None:
        store = Store()
        log = GatedLog()
        await log.open()
        await log.run(store)
        written = put(log, "k", b"v")

        async def wait() -> Event:
            return await written

        task = asyncio.ensure_future(wait())
        await asyncio.sleep(0.01)
        assert not written.done()  # the commit waits at the gate
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        log.gate.set()
        await asyncio.sleep(0.01)
        assert written.result() == Event(1, EventType.PUT, "k", b"v")
        assert store.snapshot() == {"k": b"v"}
        await log.aclose()

    asyncio.run(main())


def test_a_callback_that_raises_does_not_stop_the_batchs_other_acknowledgements() -> None:
    """A waiter's bug is logged; the writes after it in the batch are still acknowledged."""

    async def main() -> None:
        log = await started(Store())
        broken, fine = put(log, "a", b"1"), put(log, "b", b"2")
        got: list[int] = []

        def fail(written: Written) -> None:
            raise ValueError("a bug in a waiter")

        broken.add_done_callback(fail)
        fine.add_done_callback(lambda w: got.append(w.result().sequence))
        await asyncio.sleep(0.01)
        assert got == [2]
        assert log.failure is None
        await log.aclose()

    asyncio.run(main())


class BrokenStore:
    """A store that cannot apply the key ``bad``: the state would no longer match the log.

    A wrapper, not a subclass: the store may be compiled, and an interpreted class cannot inherit from it.
    """

    def __init__(self) -> None:
        self.store = Store()

    def apply(self, event: Event) -> object:
        if event.key == "bad":
            raise ValueError("cannot apply")
        return self.store.apply(event)

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


def test_an_apply_that_fails_acknowledges_what_was_applied_and_fails_the_rest() -> None:
    """Writes applied before the failing one are acknowledged; it and the rest of its batch fail; the log stops."""

    async def main() -> None:
        broken = BrokenStore()
        store = broken.store
        log = await started(broken)
        writes = [put(log, "a", b"1"), put(log, "bad", b"2"), put(log, "c", b"3")]
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert results[0] == Event(1, EventType.PUT, "a", b"1")
        assert [str(result) for result in results[1:]] == ["applying a committed event failed: cannot apply"] * 2
        assert all(type(result) is LogFailedError for result in results[1:])
        assert store.snapshot() == {"a": b"1"}
        assert isinstance(log.failure, LogFailedError)
        await log.aclose()

    asyncio.run(main())


def test_a_failure_in_the_loop_turn_before_a_batch_leaves_nothing_to_commit() -> None:
    """The group commit gives the loop a turn before taking a batch; a failure in that turn empties the queue."""
    batches: list[list[Mutation]] = []

    async def commit(batch: Sequence[Mutation]) -> Sequence[Outcome]:
        batches.append(list(batch))
        return [Event(i + 1, m.type, m.key, m.value) for i, m in enumerate(batch)]

    async def main() -> None:
        commits = GroupCommit(commit)
        commits.start(lambda event: None)
        written = commits.submit(EventType.PUT, "k", b"v")
        # Runs after the task's first step, which found the write pending and yielded: inside that turn.
        asyncio.get_running_loop().call_soon(commits.fail, LogFailedError("the disk is gone"))
        with pytest.raises(LogFailedError, match="the disk is gone"):
            await written
        await commits.aclose()

    asyncio.run(main())
    assert batches == []
