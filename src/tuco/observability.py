"""Logs as an event stream on stdout (twelve-factor XI) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest

__all__ = ["Metrics", "configure_logging"]


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


class Metrics:
    """Gauges computed when scraped, so the request path pays nothing for them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._tasks = Gauge("tuco_asyncio_tasks", "asyncio tasks alive in the serving loop", registry=self.registry)
        self._tasks.set_function(lambda: len(asyncio.all_tasks()))

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value is read at scrape time."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
