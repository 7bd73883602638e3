"""The expirer: DELETEs for keys past their deadline and revokes for expired leases, written as they come due."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

import structlog

from tuco._tasks import stop_task
from tuco.core.events import Event, EventType, Expiry, Precondition
from tuco.core.leases import Due
from tuco.core.origin import EXPIRER, Reason, new_origin
from tuco.core.store import Store
from tuco.errors import LeaseNotFoundError, LogClosedError, PreconditionFailedError, TucoError
from tuco.ports import TransactionLog

__all__ = ["Expirer", "outcomes"]

_logger = structlog.get_logger("tuco")
_EXPIRED = new_origin(EXPIRER, 0, Reason.EXPIRED)
_BY_EXPIRER = new_origin(EXPIRER, 0)
# The expirer looks at the deadline heap at least this often (seconds): a deadline is met within about this
# plus one commit. A look is a heap peek; new deadlines need no wake-up.
_EXPIRY_POLL = 0.05
_EXPIRY_RETRY_MS = 250  # an expiry write that did not happen (log down, decided not yet expired) is retried after
# Deadlines the expirer takes per round, and writes it hands the log at once: each slice is one group-committed
# batch (one log write or one database call), and between two the loop serves requests. 100,000 leases ending
# at once are twenty rounds, not one pause of seconds.
_EXPIRY_SLICE = 5000


class Expirer:
    """Writes the expiry of what is due in ``store``, by ``now_ms`` (the log's clock unless one is handed in).

    Each write is conditional (the key's mod_revision, and its deadline by the
    log's clock), so replicas expiring one key together write one DELETE and a
    key rewritten or kept alive meanwhile stays. ``sleep`` is the wait between
    rounds (a test may hand in one that does not wait on the wall clock).
    """

    def __init__(
        self,
        store: Store,
        log: TransactionLog,
        *,
        now_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self._log = log
        self._now_ms = now_ms or log.now_ms
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self.expired_keys = 0
        """Keys this replica deleted because their deadline passed (another replica may have deleted others)."""
        self.rounds = 0
        """Rounds finished (a look at the deadlines, and the writes of what was due): it is alive.

        A round that starts after a clock reading has seen that time; "nothing expired" is known once two more ended.
        """

    def start(self) -> None:
        """Run the rounds in a task until :meth:`aclose`."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="tuco-expirer")

    async def aclose(self) -> None:
        """Stop the rounds (a write in flight is left to the log)."""
        task, self._task = self._task, None
        if task is not None:
            await stop_task(task)  # a cancel of this close still reaches its caller

    async def run(self) -> None:
        """Round after round, forever. Never dies: a failure is logged and retried."""
        now_ms = self._now_ms
        while True:
            try:
                store = self.store
                now = now_ms()
                due = store.due(now, _EXPIRY_SLICE)
                if due:
                    await self.expire(due, now)
                self.rounds += 1
                upcoming = store.leases.next_due()
                wait = _EXPIRY_POLL if upcoming is None else min(_EXPIRY_POLL, max(0.0, (upcoming - now_ms()) / 1000))
                await self._sleep(wait)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: say so, keep expiring
                _logger.exception("expirer_failed")
                await self._sleep(1.0)

    async def expire(self, due: Due, now: int) -> None:
        """Write the DELETEs of the due keys, then the revokes of the due leases, a slice at a time."""
        log = self._log
        expired = Expiry(expired=True)
        again: list[str] = []
        for part in _slices(due.keys):
            settled = await outcomes(
                [
                    log.write_expiring(EventType.DELETE, key, b"", Precondition(mod), expired, _EXPIRED)
                    for key, mod in part
                ]
            )
            again += [key for (key, _), outcome in zip(part, settled, strict=True) if not isinstance(outcome, Event)]
            _note_failures(settled, "expiring keys")
        self.expired_keys += len(due.keys) - len(again)
        leases: list[int] = []
        for ids in _slices(due.leases):
            revoked = await outcomes(
                [
                    log.write_expiring(
                        EventType.LEASE_REVOKE, "", b"", None, Expiry(lease=id, expired=True), _BY_EXPIRER
                    )
                    for id in ids
                ]
            )
            leases += [id for id, outcome in zip(ids, revoked, strict=True) if not isinstance(outcome, Event)]
            _note_failures(revoked, "expiring leases")
        if again or leases:
            self.store.retry_later(again, leases, now + _EXPIRY_RETRY_MS)


def _note_failures(settled: Sequence[object], doing: str) -> None:
    """Log the first unexpected failure of a round; refusals (another replica was first) are expected."""
    for outcome in settled:
        if isinstance(outcome, PreconditionFailedError | LeaseNotFoundError):
            continue
        if isinstance(outcome, LogClosedError):
            return
        if isinstance(outcome, TucoError):
            _logger.warning("expiry_write_failed", doing=doing, error=outcome.code)
            return
        if isinstance(outcome, BaseException):
            _logger.error("expiry_write_failed", doing=doing, error=repr(outcome))
            return


_T = TypeVar("_T")


def _slices(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), _EXPIRY_SLICE):
        yield items[start : start + _EXPIRY_SLICE]


async def outcomes(writes: Sequence[Awaitable[Event]]) -> list[Event | BaseException]:
    """Each write's event or exception, in order, once all are settled.

    The group commit's writes (like futures) take a done callback, called in
    the pass that settles their batch: waiting on those costs no task per
    write, where ``asyncio.gather`` would wrap each of 100,000 revokes in one.
    """
    done = asyncio.get_running_loop().create_future()
    settled: list[Event | BaseException | None] = [None] * len(writes)
    remaining = len(writes)

    def on_settled(index: int, write: Any) -> None:
        nonlocal remaining
        failure = asyncio.CancelledError() if write.cancelled() else write.exception()
        settled[index] = failure if failure is not None else write.result()
        remaining -= 1
        if not remaining and not done.done():
            done.set_result(None)

    for index, write in enumerate(writes):
        add_done_callback = getattr(write, "add_done_callback", None)
        if add_done_callback is None:  # a write that waits for room in the queue first: a coroutine
            add_done_callback = asyncio.ensure_future(write).add_done_callback
        add_done_callback(functools.partial(on_settled, index))
    if remaining:
        await done
    return cast(list[Event | BaseException], settled)
