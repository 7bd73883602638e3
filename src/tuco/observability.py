"""Logs as an event stream on stdout (twelve-factor XI) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

import structlog
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from tuco.core.distribution import Distribution

__all__ = [
    "Family",
    "Metrics",
    "configure_logging",
    "counter_family",
    "gauge_family",
    "histogram_family",
    "labelled_counter_family",
]

Family: TypeAlias = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """One JSON object per line on stdout (or a console rendering); stdlib logging joins the stream."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.processors.format_exc_info],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _Reading(Collector):
    """Families built by a function when scraped."""

    def __init__(self, read: Callable[[], Iterable[Family]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Family]:
        return self._read()

    def describe(self) -> Iterable[Family]:
        return ()  # built at scrape time: nothing to check names against at registration


def histogram_family(
    name: str, documentation: str, labels: Sequence[str], series: Iterable[tuple[Sequence[str], Distribution]]
) -> HistogramMetricFamily:
    """A Prometheus histogram from :class:`Distribution` counts, one series per label values."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, counts in series:
        buckets = [(_bound(bound), float(n)) for bound, n in counts.cumulative()]
        family.add_metric(list(values), buckets, counts.sum)
    return family


def counter_family(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """A counter (``name`` without ``_total``) with one unlabelled value."""
    return CounterMetricFamily(name, documentation, value=value)


def labelled_counter_family(
    name: str, documentation: str, labels: Sequence[str], series: Iterable[tuple[Sequence[str], float]]
) -> CounterMetricFamily:
    """A counter (``name`` without ``_total``) with one value per label values."""
    family = CounterMetricFamily(name, documentation, labels=list(labels))
    for values, n in series:
        family.add_metric(list(values), float(n))
    return family


def gauge_family(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A gauge with one unlabelled value."""
    return GaugeMetricFamily(name, documentation, value=value)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """Families computed when scraped, from numbers the code keeps anyway, so the request path pays little."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._tasks = Gauge("tuco_asyncio_tasks", "asyncio tasks alive in the serving loop", registry=self.registry)
        self._tasks.set_function(lambda: len(asyncio.all_tasks()))

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Register a counter (``name`` without ``_total``) whose value is read at scrape time."""

        def families() -> Iterable[Family]:
            yield counter_family(name, documentation, read())

        self.collect(families)

    def collect(self, read: Callable[[], Iterable[Family]]) -> None:
        """Register a function that builds metric families at scrape time (histograms, labelled counters)."""
        self.registry.register(_Reading(read))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
