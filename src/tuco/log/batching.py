"""Group commit: one durable write for every event that arrived during the previous one."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, TypeAlias

import structlog

from tuco.core.codec import RECORD_OVERHEAD
from tuco.core.events import Event, EventType, Precondition
from tuco.errors import (
    InvalidKeyError,
    LogClosedError,
    LogError,
    LogFailedError,
    LogUnavailableError,
    PreconditionFailedError,
)

__all__ = ["CommitBatch", "GroupCommit", "Mutation", "Outcome", "has_conditions", "sequence_batch"]

_logger = structlog.get_logger("tuco.log")


class Mutation(NamedTuple):
    """A write waiting to be committed, and what the key must look like for it to happen."""

    type: EventType
    key: str
    value: bytes
    precondition: Precondition | None = None


_Batch = list[tuple[Mutation, "asyncio.Future[Event]"]]

ApplyEvent = Callable[[Event], object]
"""Called for every committed event, in sequence order."""

Outcome: TypeAlias = Event | PreconditionFailedError
"""What became of one mutation of a batch: its event, or why its precondition refused it."""

CommitBatch = Callable[[Sequence[Mutation]], Awaitable[Sequence[Outcome]]]
"""Makes a batch durable and returns one outcome per mutation, in the same order.

Preconditions are decided in log order, as if the mutations were applied one
by one: a refused mutation is not written and takes no sequence.
"""


_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__: these are made per write
_precondition_of = operator.itemgetter(3)


def has_conditions(batch: Sequence[Mutation]) -> bool:
    """Whether any mutation of ``batch`` is conditional (a C-level scan: most batches have none)."""
    return any(map(_precondition_of, batch))  # a Precondition is a non-empty tuple: true even for ABSENT


def sequence_batch(batch: Sequence[Mutation], first: int, mod_revision: Callable[[str], int]) -> list[Outcome]:
    """Number a batch from ``first``, deciding each precondition against the state before it.

    For logs with one writer (the file and memory logs): ``mod_revision`` is
    the applied state, which holds every earlier batch; a key written earlier
    in this batch is judged by that write.
    """
    if not has_conditions(batch):
        return [_new(Event, (first + i, m[0], m[1], m[2], 0, 0)) for i, m in enumerate(batch)]
    outcomes: list[Outcome] = []
    written: dict[str, int] = {}
    sequence = first
    put = EventType.PUT
    for m in batch:
        if m.precondition is not None:
            current = written[m.key] if m.key in written else mod_revision(m.key)
            if not m.precondition.holds(current):
                outcomes.append(PreconditionFailedError(m.key, current))
                continue
        outcomes.append(Event(sequence, m.type, m.key, m.value))
        written[m.key] = sequence if m.type is put else 0
        sequence += 1
    return outcomes


class GroupCommit:
    """Queues writes, commits them in batches, applies and acknowledges them in order.

    While one batch is being committed the next one gathers, so N concurrent
    writers cost one disk flush (or one database transaction), not N. Events
    are applied in commit order before anyone is acknowledged, so the state
    readers see is always a prefix of the log. The queue is bounded in bytes:
    past the bound, writers wait (back-pressure) instead of growing memory.
    After a failure nothing more is accepted and nothing unstored is acknowledged,
    except that a commit raising :class:`~tuco.errors.LogUnavailableError` (the
    database is out of reach for now) fails only its own batch: later batches are
    still tried, so writes resume when the database comes back.
    """

    def __init__(self, commit: CommitBatch, *, max_pending_bytes: int = 64 << 20) -> None:
        self._commit = commit
        self._max_pending_bytes = max_pending_bytes
        self._pending: _Batch = []
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._task: asyncio.Task[None] | None = None
        self._apply: ApplyEvent | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.failure: LogError | None = None
        self.batches = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet handed to a commit."""
        return self._pending_bytes

    def start(self, apply: ApplyEvent) -> None:
        """Start the committing task; it ends when :meth:`aclose` has drained the queue."""
        self._apply = apply
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="tuco-group-commit")

    def submit(
        self, type: EventType, key: str, value: bytes = b"", precondition: Precondition | None = None
    ) -> Awaitable[Event]:
        """Queue one mutation; the result resolves once it is committed and applied.

        Returns a plain future when the queue has room (the common case: no
        coroutine or task per write), and a coroutine that first waits for room
        otherwise. Raises at once if the log failed or closed, and raises
        :class:`InvalidKeyError` for a key that cannot be encoded as UTF-8 (a
        lone surrogate), before it can reach, and break, a commit. A precondition
        that does not hold fails the write with :class:`PreconditionFailedError`.
        """
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidKeyError("the key cannot be encoded as UTF-8") from None
        if self.failure is not None or self._closing or self._task is None:
            self._check_open()
        mutation = _new(Mutation, (type, key, value, precondition))
        if self._pending_bytes >= self._max_pending_bytes:
            return self._submit_when_room(mutation)
        return self._enqueue(mutation)

    def _check_open(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self._closing or self._task is None:
            raise LogClosedError("the log is closed and takes no more writes")

    async def _submit_when_room(self, mutation: Mutation) -> Event:
        while self._pending_bytes >= self._max_pending_bytes:
            self._space.clear()
            await self._space.wait()
            self._check_open()
        return await self._enqueue(mutation)

    def _enqueue(self, mutation: Mutation) -> asyncio.Future[Event]:
        future: asyncio.Future[Event] = self._loop.create_future()  # type: ignore[union-attr]  # start() set it
        self._pending.append((mutation, future))
        self._pending_bytes += RECORD_OVERHEAD + len(mutation[1]) + len(mutation[2])
        if not self._wakeup.is_set():
            self._wakeup.set()
        return future

    def fail(self, error: LogFailedError) -> None:
        """Stop taking writes and fail everything queued; the first failure is kept."""
        if self.failure is None:
            self.failure = error
            _logger.error("log_failed", error=str(error), cause=repr(error.__cause__))
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        _fail_batch(pending, self.failure)
        self._space.set()
        self._wakeup.set()

    async def _run(self) -> None:
        apply = self._apply
        if apply is None:  # pragma: no cover - start() always sets it
            raise RuntimeError("GroupCommit started without apply")
        while True:
            if not self._pending:
                if self._closing or self.failure is not None:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, self._pending = self._pending, []
            self._pending_bytes = 0
            self._space.set()
            try:
                outcomes = await self._commit([mutation for mutation, _ in batch])
            except LogUnavailableError as exc:
                _fail_batch(batch, exc)  # the database may come back: only this batch fails
                continue
            except Exception as exc:  # any other failure: nothing in the batch may be acknowledged
                self._fail_with_batch(batch, exc, "commit failed")
                return
            self.batches += 1
            try:
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, PreconditionFailedError):
                        if not future.done():
                            future.set_exception(outcome)
                        continue
                    apply(outcome)
                    if not future.done():
                        future.set_result(outcome)
            except Exception as exc:  # the store no longer matches the log: stop writing
                self._fail_with_batch(batch, exc, "applying a committed event failed")
                return

    def _fail_with_batch(self, batch: _Batch, exc: Exception, doing: str) -> None:
        error = exc if isinstance(exc, LogFailedError) else LogFailedError(f"{doing}: {exc}")
        if error is not exc:
            error.__cause__ = exc
        _fail_batch(batch, error)
        self.fail(error)

    async def aclose(self) -> None:
        """Take no more writes, commit everything queued, and stop the task."""
        self._closing = True
        self._wakeup.set()
        self._space.set()
        if self._task is not None:
            await asyncio.shield(self._task)


def _fail_batch(batch: _Batch, error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
