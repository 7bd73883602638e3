"""The native server's sense of time: a monotonic ``now()`` and timers, injectable so tests move time by hand.

Every time-out of the native server (request, keep-alive, send, linger, TLS
handshake) and its Date refresh are scheduled through one :class:`Clock`,
which reads the event loop's clock by default. A test gives the server a
:class:`ManualClock` instead and calls :meth:`ManualClock.advance`: a 30 s
time-out is then tested in milliseconds, and exactly (a deadline not yet
reached has not fired, however slow the machine), as with trio's
``MockClock`` or uvicorn's fake timers. Wall time (``wall()``) stays apart: a
client certificate's notAfter and the Date header are calendar times.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "Timer"]


class Timer(Protocol):
    """A scheduled callback that can be called off (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class Clock:
    """Monotonic seconds and callbacks at a moment of them; ``Clock.of_loop(loop)`` is the running loop's."""

    __slots__ = ("call_at", "now", "wall")

    def __init__(
        self,
        now: Callable[[], float],
        call_at: Callable[[float, Callable[[], object]], Timer],
        wall: Callable[[], float] = time.time,
    ) -> None:
        # Bound methods kept as attributes: ``clock.now()`` costs what ``loop.time()`` does, on the hot path.
        self.now = now
        self.call_at = call_at
        self.wall = wall

    @classmethod
    def of_loop(cls, loop: asyncio.AbstractEventLoop) -> Clock:
        return cls(loop.time, loop.call_at)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """A clock that moves only when told to: :meth:`advance` runs, in order, the callbacks that became due.

    Wall time moves with it, from the real time at creation, so a certificate's notAfter can be reached too.
    """

    __slots__ = ("_order", "_timers", "_wall_start", "time")

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self._wall_start = time.time() - start
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()
        super().__init__(self._now, self._call_at, self._wall)

    def _now(self) -> float:
        return self.time

    def _wall(self) -> float:
        return self._wall_start + self.time

    def _call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        timer = _ManualTimer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    @property
    def pending(self) -> int:
        """Timers scheduled and not yet run or cancelled."""
        return sum(not timer.cancelled for _, _, timer in self._timers)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running each timer due by then at its own moment."""
        target = self.time + seconds
        timers = self._timers
        while timers and timers[0][0] <= target:
            when, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            self.time = max(self.time, when)
            timer.callback()
        self.time = target
