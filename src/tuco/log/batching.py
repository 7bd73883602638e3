"""Group commit: one durable write for every event that arrived during the previous one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Final, cast

import structlog

from tuco.core.codec import RECORD_OVERHEAD
from tuco.core.distribution import BATCH_SIZE_BOUNDS, SECONDS_BOUNDS, Distribution
from tuco.core.events import Event, EventType, Expiry, Precondition
from tuco.core.origin import Origin
from tuco.core.txn import Txn, TxnOutcome, txn_bytes
from tuco.errors import (
    InvalidKeyError,
    LogClosedError,
    LogError,
    LogFailedError,
    LogReadOnlyError,
    LogUnavailableError,
    TucoError,
)
from tuco.log._sequencing import (
    TXN_EXPIRY,
    ExpiryState,
    Mutation,
    Outcome,
    has_conditions,
    sequence_batch,
    wall_clock_ms,
)

__all__ = [
    "CommitBatch",
    "ExpiryState",
    "GroupCommit",
    "Mutation",
    "Outcome",
    "Written",
    "has_conditions",
    "sequence_batch",
    "wall_clock_ms",
]

_logger = structlog.get_logger("tuco.log")


ApplyEvent = Callable[[Event], object]
"""Called for every committed event, in sequence order."""

CommitBatch = Callable[[Sequence[Mutation]], Awaitable[Sequence[Outcome]]]
"""Makes a batch durable and returns one outcome per mutation, in the same order.

Preconditions are decided in log order, as if the mutations were applied one
by one: a refused mutation is not written and takes no sequence.
"""


_JOIN_BELOW_BYTES: Final = 1 << 20  # a batch smaller than this waits one loop turn for more writers (see _run)

_MUTATION: Final = Mutation  # Final: a C static in the compiled build, not a dict lookup per write
_new: Final = tuple.__new__  # builds a NamedTuple without its Python-level __new__: these are made per write


class Written:
    """One queued write's outcome: settled by the group commit in its batch's pass, or awaited.

    The native server registers one callback, which the group commit calls
    itself once the whole batch is applied: no future, and no loop callback,
    per write. Awaiting it (the ASGI front end, the service's own writes)
    makes a future on first use. Like an ``asyncio.Future``, it offers
    ``add_done_callback``, ``result``, ``exception`` and ``cancelled``; unlike
    one, it cannot be cancelled (a cancelled awaiter stops waiting, the write
    still happens) and the callback runs inside the batch's pass, not later.
    """

    __slots__ = ("_callback", "_future", "_outcome")

    def __init__(self) -> None:
        self._outcome: Event | TxnOutcome | BaseException | None = None
        self._callback: Callable[[Written], object] | None = None
        self._future: asyncio.Future[Event] | None = None

    def done(self) -> bool:
        return self._outcome is not None

    def cancelled(self) -> bool:
        return False

    def result(self) -> Event:
        """The committed event; raises why the write was not stored, or ``InvalidStateError`` before it is known."""
        outcome = self._outcome
        if outcome is None:
            raise asyncio.InvalidStateError("the write is not settled yet")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]  # a transaction's: submit_txn types it

    def exception(self) -> BaseException | None:
        outcome = self._outcome
        if outcome is None:
            raise asyncio.InvalidStateError("the write is not settled yet")
        return outcome if isinstance(outcome, BaseException) else None

    def add_done_callback(self, callback: Callable[[Written], object]) -> None:
        """Have ``callback(self)`` called when the write is settled; one callback per write.

        Raises RuntimeError for a second one (the native server adds one, and awaiting adds none).
        """
        if self._callback is not None:
            raise RuntimeError("a write takes one done callback")
        if self._outcome is not None:
            asyncio.get_running_loop().call_soon(callback, self)  # as a future does: never from inside the caller
            return
        self._callback = callback

    def __await__(self) -> Generator[Any, None, Event]:
        if self._outcome is None:
            future = self._future
            if future is None:
                future = self._future = asyncio.get_running_loop().create_future()
            yield from future.__await__()  # a cancelled awaiter cancels only this future, not the write
        return self.result()

    def __repr__(self) -> str:
        return f"Written({self._outcome!r})"


def _settle(written: Written, outcome: Event | TxnOutcome | BaseException) -> None:
    """Record a write's outcome and tell whoever waits for it; called only by the group commit."""
    written._outcome = outcome
    callback = written._callback
    if callback is not None:
        try:
            callback(written)
        except Exception as exc:  # a waiter's bug must not stop the batch's other acknowledgements
            _logger.error("write_callback_failed", exc_info=exc)
    future = written._future
    if future is not None and not future.done():
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]  # a transaction's outcome


class GroupCommit:
    """Queues writes, commits them in batches, applies and acknowledges them in order.

    While one batch is being committed the next one gathers, so N concurrent
    writers cost one disk flush (or one database transaction), not N. Events
    are applied in commit order before anyone is acknowledged, so the state
    readers see is always a prefix of the log. The queue is bounded in bytes:
    past the bound, writers wait (back-pressure) instead of growing memory.
    After a failure nothing more is accepted and nothing unstored is acknowledged,
    except that a commit raising :class:`~tuco.errors.LogUnavailableError` (the
    database is out of reach for now) or :class:`~tuco.errors.LogReadOnlyError` (a
    privilege is missing) fails only its own batch: later batches are still tried,
    so writes resume when the database comes back or the privilege is granted.
    """

    def __init__(self, commit: CommitBatch, *, max_pending_bytes: int = 64 << 20, txns_together: bool = False) -> None:
        self._commit = commit
        self._txns_together = txns_together
        """Consecutive transactions share a batch (a one-writer log decides each against the ones before it)."""
        self._max_pending_bytes = max_pending_bytes
        self._pending: list[Mutation] = []
        self._waiters: list[Written] = []  # one per pending mutation, in the same order
        self._pending_bytes = 0
        self._txns = 0  # transactions pending: each is committed in a batch of its own
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._task: asyncio.Task[None] | None = None
        self._apply: ApplyEvent | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.failure: LogError | None = None
        self.batches = 0
        self.batch_sizes = Distribution(BATCH_SIZE_BOUNDS)
        self.commit_seconds = Distribution(SECONDS_BOUNDS)

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
        self,
        type: EventType,
        key: str,
        value: bytes = b"",
        precondition: Precondition | None = None,
        origin: Origin | None = None,
    ) -> Awaitable[Event]:
        """Queue one mutation; the result resolves once it is committed and applied.

        Returns a :class:`Written` when the queue has room (the common case: no
        future, coroutine or task per write), and a coroutine that first waits
        for room otherwise. Raises at once if the log failed or closed, and raises
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
        mutation = _new(_MUTATION, (type, key, value, precondition, None, None, origin))
        if self._pending_bytes >= self._max_pending_bytes:
            return self._submit_when_room(mutation)
        return self._enqueue(mutation)

    def submit_expiring(
        self,
        type: EventType,
        key: str,
        value: bytes,
        precondition: Precondition | None,
        expiry: Expiry,
        origin: Origin | None = None,
    ) -> Awaitable[Event]:
        """:meth:`submit` for a write with a deadline, a lease or an expired-only condition, and for lease records.

        A missing (or expired) lease fails it with :class:`LeaseNotFoundError`.
        """
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidKeyError("the key cannot be encoded as UTF-8") from None
        self._check_open()
        mutation = Mutation(type, key, value, precondition, expiry, None, origin)
        if self._pending_bytes >= self._max_pending_bytes:
            return self._submit_when_room(mutation)
        return self._enqueue(mutation)

    def submit_txn(self, txn: Txn, origin: Origin | None = None) -> Awaitable[TxnOutcome]:
        """Queue a transaction; the result resolves to its outcome once it is decided, committed and applied.

        Committed in a batch of its own, after every write queued before it, so
        its compares are decided against the state all of them left.
        """
        self._check_open()
        mutation = Mutation(EventType.TXN, "", b"", None, TXN_EXPIRY, txn, origin)
        if self._pending_bytes >= self._max_pending_bytes:
            return cast("Awaitable[TxnOutcome]", self._submit_when_room(mutation))
        return cast("Awaitable[TxnOutcome]", self._enqueue(mutation))

    def _take_batch(self) -> tuple[list[Mutation], list[Written]]:
        """The next batch: everything pending, or, with transactions pending, up to the next one (or it, alone)."""
        pending, waiters = self._pending, self._waiters
        if self._txns:
            cut = next((i for i, m in enumerate(pending) if m.txn is not None), -1) or 1
            if cut < 0:  # none is pending after all (never expected): the count was wrong, not the queue
                self._txns = 0
                cut = len(pending)
            elif self._txns_together and pending[0].txn is not None:  # the run of transactions at the head
                cut = next((i for i, m in enumerate(pending) if m.txn is None), len(pending))
            if cut < len(pending):
                self._pending, self._waiters = pending[cut:], waiters[cut:]
                pending, waiters = pending[:cut], waiters[:cut]
                self._txns -= cut if pending[0].txn is not None else 0
                self._pending_bytes = sum(_size(m) for m in self._pending)
                return pending, waiters
            self._txns -= cut if pending[0].txn is not None else 0
        self._pending, self._waiters = [], []
        self._pending_bytes = 0
        return pending, waiters

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

    def _enqueue(self, mutation: Mutation) -> Written:
        written = Written()
        pending = self._pending
        pending.append(mutation)
        self._waiters.append(written)
        if mutation[5] is None:
            self._pending_bytes += RECORD_OVERHEAD + len(mutation[1]) + len(mutation[2])
        else:
            self._pending_bytes += _size(mutation)
            self._txns += 1
        if len(pending) == 1:  # the first of a batch: the task may be waiting (later ones find it woken or busy)
            self._wakeup.set()
        return written

    def fail(self, error: LogFailedError) -> None:
        """Stop taking writes and fail everything queued; the first failure is kept."""
        if self.failure is None:
            self.failure = error
            _logger.error("log_failed", error=str(error), cause=repr(error.__cause__))
        waiters, self._waiters = self._waiters, []
        self._pending = []
        self._pending_bytes = 0
        self._txns = 0
        _fail_batch(waiters, self.failure)
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
            # One loop turn first: the writers the last batch just answered (and any others ready to be read)
            # join this batch instead of the next. Under 64 durable writers, batches of 32 became batches
            # of 63: half the syncs, each of which costs the process some 150 µs of CPU in its thread. Not for
            # a batch that is already large: its sync is worth its bytes, and more only lengthen its write.
            if self._pending_bytes < _JOIN_BELOW_BYTES:
                await asyncio.sleep(0)
                if not self._pending:  # a failure in that turn failed them all: nothing to commit
                    continue
            batch, waiters = self._take_batch()  # the rest, if any, is the next batch
            self._space.set()
            started = time.perf_counter()
            try:
                outcomes = await self._commit(batch)
            except (LogUnavailableError, LogReadOnlyError) as exc:
                _fail_batch(waiters, exc)  # the database may come back, a privilege be granted: only this batch fails
                continue
            except Exception as exc:  # any other failure: nothing in the batch may be acknowledged
                self._fail_with_batch(waiters, exc, "commit failed")
                return
            self.batches += 1
            self.commit_seconds.observe(time.perf_counter() - started)
            self.batch_sizes.observe(len(batch))
            if len(outcomes) != len(waiters):
                error = ValueError(f"the commit returned {len(outcomes)} outcomes for {len(waiters)} writes")
                self._fail_with_batch(waiters, error, "applying a committed event failed")
                return
            # Apply the whole batch first, then acknowledge it in one pass: nobody hears of a write
            # before every event of its batch is in the state readers see.
            plain = not has_conditions(batch)  # then every outcome is an event: no refusals to look for
            applied = 0
            try:
                if plain:
                    for applied, outcome in enumerate(outcomes):  # noqa: B007  # read below if apply raises
                        apply(outcome)  # type: ignore[arg-type]  # no conditions: every outcome is an event
                else:
                    for applied, outcome in enumerate(outcomes):  # noqa: B007
                        if isinstance(outcome, TxnOutcome):
                            if outcome.event is not None:  # a transaction that wrote nothing has no event
                                apply(outcome.event)
                        elif not isinstance(outcome, TucoError):  # refused: a precondition, or a missing lease
                            apply(outcome)
            except Exception as exc:  # the store no longer matches the log: stop writing
                for written, outcome in zip(waiters[:applied], outcomes, strict=False):
                    _settle(written, outcome)  # these are stored and applied
                self._fail_with_batch(waiters[applied:], exc, "applying a committed event failed")
                return
            for written, outcome in zip(waiters, outcomes, strict=True):
                _settle(written, outcome)

    def _fail_with_batch(self, waiters: list[Written], exc: Exception, doing: str) -> None:
        error = exc if isinstance(exc, LogFailedError) else LogFailedError(f"{doing}: {exc}")
        if error is not exc:
            error.__cause__ = exc
        _fail_batch(waiters, error)
        self.fail(error)

    async def aclose(self) -> None:
        """Take no more writes, commit everything queued, and stop the task."""
        self._closing = True
        self._wakeup.set()
        self._space.set()
        if self._task is not None:
            await asyncio.shield(self._task)


def _size(mutation: Mutation) -> int:
    """What a queued mutation counts against the pending bound."""
    txn = mutation[5]
    if txn is not None:
        return RECORD_OVERHEAD + txn_bytes(txn)
    return RECORD_OVERHEAD + len(mutation[1]) + len(mutation[2])


def _fail_batch(waiters: list[Written], error: BaseException) -> None:
    for written in waiters:
        if written._outcome is None:
            _settle(written, error)
