"""The service's metric families: store and lease counts, the expirer's work, the store bound, the log's numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from tuco.core.store import Store
from tuco.observability import Family, Metrics, counter_family, gauge_family, histogram_family
from tuco.ports import TransactionLog

__all__ = ["Observed", "register"]


class Observed(Protocol):
    """What the families read at scrape time (the service, described without importing it)."""

    @property
    def store(self) -> Store: ...
    @property
    def log(self) -> TransactionLog: ...
    @property
    def ready(self) -> bool: ...
    @property
    def watch_count(self) -> int: ...
    @property
    def expired_keys(self) -> int: ...
    @property
    def expiry_rounds(self) -> int: ...
    @property
    def store_refusals(self) -> int: ...


def register(metrics: Metrics, service: Observed, *, max_store_bytes: int, max_store_keys: int | None) -> None:
    """Register the service's families; ``max_store_keys`` None: the store holds no full copy, it has no bound."""
    metrics.gauge("tuco_keys", "keys in the store", lambda: len(service.store))
    metrics.gauge("tuco_last_sequence", "last event applied", lambda: service.store.last_sequence)
    metrics.gauge("tuco_ready", "1 when serving and the log takes writes", lambda: float(service.ready))
    metrics.gauge(
        "tuco_log_failed",
        "1 once the log failed: it takes no more writes until a restart (after fixing the disk or database)",
        lambda: float(service.log.failure is not None),
    )
    metrics.gauge("tuco_watchers", "open watch streams", lambda: service.watch_count)
    metrics.gauge("tuco_leases", "live leases", lambda: len(service.store.leases))
    metrics.gauge("tuco_tokens", "tokens (revoked ones excluded)", lambda: len(service.store.tokens))
    metrics.counter("tuco_keys_expired", "keys this replica deleted at their deadline", lambda: service.expired_keys)
    metrics.counter(
        "tuco_expiry_rounds",
        "rounds the expirer finished (it looks at the deadlines every 50 ms)",
        lambda: service.expiry_rounds,
    )
    if max_store_keys is not None:
        metrics.gauge(
            "tuco_store_bytes", "bytes the store holds (keys, values, 240 per key)", lambda: float(service.store.bytes)
        )
        metrics.gauge("tuco_store_max_bytes", "TUCO_MAX_STORE_BYTES (0: no bound)", lambda: float(max_store_bytes))
        metrics.gauge("tuco_store_max_keys", "TUCO_MAX_STORE_KEYS (0: no bound)", lambda: float(max_store_keys))
        metrics.counter(
            "tuco_store_full_refusals", "writes refused: the store is at its bound", lambda: service.store_refusals
        )
    metrics.collect(lambda: _log_families(service.log))


def _log_families(log: TransactionLog) -> Iterator[Family]:
    """The log's counts and replication lag as metric families (at scrape time)."""
    counted = log.statistics()
    yield histogram_family("tuco_log_commit_batch_size", "writes per committed batch", (), [((), counted.batch_sizes)])
    yield histogram_family(
        "tuco_log_commit_duration_seconds",
        "time from a batch handed to the log to its commit (write and sync, or the database transaction)",
        (),
        [((), counted.commit_seconds)],
    )
    if counted.sync_seconds is not None:
        yield histogram_family(
            "tuco_log_sync_duration_seconds", "each fdatasync of the log file", (), [((), counted.sync_seconds)]
        )
    yield counter_family("tuco_log_compactions", "log rewrites finished", counted.compactions)
    described = log.describe()
    lag_events, lag_seconds = described.get("lag_events", 0), described.get("lag_seconds", 0.0)
    yield gauge_family(
        "tuco_replication_lag_events",
        "events other replicas committed that this one has not applied yet (0 for a single writer)",
        float(lag_events) if isinstance(lag_events, int | float) else 0.0,
    )
    yield gauge_family(
        "tuco_replication_lag_seconds",
        "commit-time distance from the newest event seen to the last one applied",
        float(lag_seconds) if isinstance(lag_seconds, int | float) else 0.0,
    )
