"""The assembled service: settings → log → store → API, shared by every front end."""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass

import structlog

from tuco.config import LogBackend, Settings
from tuco.core.store import Store
from tuco.http.api import KeyValueAPI, Limits, Phase
from tuco.log.file import FileTransactionLog
from tuco.observability import Metrics
from tuco.ports import TransactionLog

__all__ = ["ReplayStats", "Service", "build_log"]

_logger = structlog.get_logger("tuco")
_PROGRESS_EVERY = 5.0  # seconds between replay_progress lines
# Loop turns given away after each replayed batch. A health probe on a new
# connection needs several (accept, read, write), and a batch can take a good
# fraction of a second, so one turn per batch would let a probe wait for three
# batches. An idle turn costs microseconds; a batch holds many thousand events.
_TURNS_PER_BATCH = 4


def build_log(settings: Settings) -> TransactionLog:
    """The transaction log the settings ask for (twelve-factor IV: attached by configuration)."""
    if settings.log_backend is LogBackend.POSTGRES:
        from tuco.log.postgres import PostgresTransactionLog

        url = settings.database_url.get_secret_value() if settings.database_url else None
        return PostgresTransactionLog(
            url,
            poll_interval=settings.poll_interval_seconds,
            use_notify=settings.listen_notify,
            connect_timeout=settings.database_connect_timeout_seconds,
            write_timeout=settings.database_write_timeout_seconds,
            max_pending_bytes=settings.log_max_pending_bytes,
        )
    return FileTransactionLog(
        settings.log_path,
        sync=settings.log_sync,
        max_pending_bytes=settings.log_max_pending_bytes,
        compact_min_bytes=settings.log_compact_min_bytes,
        compact_ratio=settings.log_compact_ratio,
    )


@dataclass(frozen=True, slots=True)
class ReplayStats:
    """How long rebuilding the state took."""

    events: int
    keys: int
    seconds: float

    @property
    def events_per_second(self) -> int:
        return int(self.events / self.seconds) if self.seconds > 0 else self.events


class Service:
    """Store, log and API with their lifecycle: replay, serve, close."""

    def __init__(self, log: TransactionLog, limits: Limits | None = None, metrics: Metrics | None = None) -> None:
        self.store = Store()
        self.log = log
        self.api = KeyValueAPI(self.store, log, limits, metrics=metrics)
        if isinstance(log, FileTransactionLog) and log.entries is None:
            log.entries = self.store.entries  # what online compaction rewrites the log from
        if metrics is not None:
            metrics.gauge("tuco_keys", "keys in the store", lambda: len(self.store))
            metrics.gauge("tuco_last_sequence", "last event applied", lambda: self.store.last_sequence)
            metrics.gauge("tuco_ready", "1 when serving and the log takes writes", lambda: float(self.api.ready))

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> Service:
        limits = Limits(
            max_key_bytes=settings.max_key_bytes,
            max_value_bytes=settings.max_value_bytes,
            max_buffered_bytes=settings.body_budget_bytes,
        )
        return cls(build_log(settings), limits, metrics)

    async def start(self) -> ReplayStats:
        """Replay the log into the store, then start writing; the API turns ready."""
        started = time.perf_counter()
        apply_batch = self.store.apply_batch
        events = 0
        # Replay allocates millions of short-lived event tuples and nothing cyclic;
        # the cyclic collector would only rescan them (about a fifth of replay time).
        collecting = gc.isenabled()
        gc.disable()
        next_report = started + _PROGRESS_EVERY
        try:
            async for batch in self.log.read_events():
                apply_batch(batch)
                events += len(batch)
                # A file log's batches come without any await: give the loop its turns, so /healthz
                # and /readyz answer during a long replay instead of a liveness probe killing us.
                for _ in range(_TURNS_PER_BATCH):
                    await asyncio.sleep(0)
                if (now := time.perf_counter()) >= next_report:  # long replays show they are moving
                    next_report = now + _PROGRESS_EVERY
                    rate = int(events / (now - started))
                    _logger.info("replay_progress", events=events, keys=len(self.store), events_per_second=rate)
        finally:
            if collecting:
                gc.enable()
        await self.log.run(self.store)
        stats = ReplayStats(events, len(self.store), round(time.perf_counter() - started, 3))
        self.api.phase = Phase.SERVING
        return stats

    async def aclose(self) -> None:
        """Stop serving keys and close the log after committing what is queued."""
        self.api.phase = Phase.STOPPING
        await self.log.aclose()
