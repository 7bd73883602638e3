"""Start-up replay: the log's events into the store, with the loop kept responsive and progress logged."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from dataclasses import dataclass

import structlog

from tuco.core.store import Store
from tuco.ports import TransactionLog

__all__ = ["ReplayStats", "replay"]

_logger = structlog.get_logger("tuco")
_PROGRESS_EVERY = 5.0  # seconds between replay_progress lines
# Loop turns given away after each replayed batch. A health probe on a new
# connection needs several (accept, read, write), and a batch can take a good
# fraction of a second, so one turn per batch would let a probe wait for three
# batches. An idle turn costs microseconds; a batch holds many thousand events.
_TURNS_PER_BATCH = 4


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """How long rebuilding the state took."""

    events: int
    keys: int
    seconds: float

    @property
    def events_per_second(self) -> int:
        return int(self.events / self.seconds) if self.seconds > 0 else self.events


async def replay(log: TransactionLog, store: Store) -> tuple[int, float]:
    """Apply every event the log holds to ``store``; return the events applied and when replay started.

    The start (``time.perf_counter()``) lets the caller time replay through its own start-up steps.
    """
    started = time.perf_counter()
    apply_batch = functools.partial(store.apply_batch, recount=False)  # counted once, after the last batch
    events = 0
    # Replay allocates millions of short-lived event tuples and nothing cyclic;
    # the cyclic collector would only rescan them (about a fifth of replay time).
    collecting = gc.isenabled()
    gc.disable()
    next_report = started + _PROGRESS_EVERY
    try:
        async for batch in log.read_events():
            apply_batch(batch)
            events += len(batch)
            # A file log's batches come without any await: give the loop its turns, so /healthz
            # and /readyz answer during a long replay instead of a liveness probe killing us.
            for _ in range(_TURNS_PER_BATCH):
                await asyncio.sleep(0)
            if (now := time.perf_counter()) >= next_report:  # long replays show they are moving
                next_report = now + _PROGRESS_EVERY
                rate = int(events / (now - started))
                _logger.info("replay_progress", events=events, keys=len(store), events_per_second=rate)
        store.recount_bytes()
    finally:
        if collecting:
            gc.enable()
    return events, started
