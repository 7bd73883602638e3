"""What each answered request leaves behind: its count and latency in ``/metrics``, its id, its access-log line.

Both front ends call :meth:`RequestObserver.answered` once per answer. The
counts are plain numbers in a dict keyed by method, route and status (the
route is the declared pattern, never the raw path, so the label set stays
bounded); Prometheus families are built from them only when scraped. That
keeps the cost on the request path to a route lookup and a bisect.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Iterator

import structlog

from tuco.core.distribution import SECONDS_BOUNDS, Distribution
from tuco.http.routes import KEY, match
from tuco.observability import Family, Metrics, histogram_family, labelled_counter_family

__all__ = ["MAX_REQUEST_ID_BYTES", "RequestObserver", "usable_request_id"]

MAX_REQUEST_ID_BYTES = 128
_KEY_ROUTE = KEY.pattern
_NO_ROUTE = "none"
_logger = structlog.get_logger("tuco.access")
clock = time.perf_counter


def usable_request_id(value: bytes) -> bool:
    """Whether a client's ``X-Request-Id`` may be echoed and logged: 1 to 128 visible ASCII characters."""
    return 0 < len(value) <= MAX_REQUEST_ID_BYTES and value.isascii() and all(32 < byte < 127 for byte in value)


class RequestObserver:
    """Counts answers by method, route and status with their latency; mints request ids; writes the access log."""

    __slots__ = ("_ids", "_prefix", "access_log", "answers", "refused")

    def __init__(self, metrics: Metrics | None = None, *, access_log: bool = False) -> None:
        self.access_log = access_log
        self.answers: dict[tuple[bytes, str, int], Distribution] = {}
        """Latency of the answers per (method, route pattern, status)."""
        self.refused: dict[int, int] = {}
        """Requests refused before they were whole (malformed, too large, too slow), per status."""
        self._prefix = secrets.token_hex(4) + "-"  # ids stay unique across restarts and replicas
        self._ids = itertools.count(1)
        if metrics is not None:
            metrics.collect(self._families)

    def answered(
        self, method: bytes, path: bytes, status: int, started: float, request_id: bytes | None, client: str | None
    ) -> bytes | None:
        """Count one answer started at ``started`` (:func:`clock`); the id to echo, if there is one.

        The id is the client's ``X-Request-Id`` if usable, else, with the access
        log on, a new one (so a log line and a response can be matched).
        """
        seconds = clock() - started
        if path.startswith(b"/v1/key/") and path.find(b"/", 8) < 0:
            route = _KEY_ROUTE
        else:
            found = match(path)[0]
            route = found.pattern if found is not None else _NO_ROUTE
        key = (method, route, status)
        counts = self.answers.get(key)
        if counts is None:
            counts = self.answers[key] = Distribution(SECONDS_BOUNDS)
        counts.observe(seconds)
        if request_id is not None and not usable_request_id(request_id):
            request_id = None
        if self.access_log:
            if request_id is None:
                request_id = f"{self._prefix}{next(self._ids):x}".encode()
            _logger.info(
                "access",
                method=method.decode("latin-1"),
                path=path.decode("latin-1"),
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 3),
                request_id=request_id.decode("ascii"),
                client=client,
            )
        return request_id

    def refuse(self, status: int) -> None:
        """Count a request refused before it was complete (it has no method or route to speak of)."""
        self.refused[status] = self.refused.get(status, 0) + 1

    def _families(self) -> Iterator[Family]:
        requests = [
            ((method.decode("latin-1"), route, str(status)), counts)
            for (method, route, status), counts in sorted(self.answers.items())
        ]
        yield labelled_counter_family(
            "tuco_http_requests",
            "requests answered, by method, route pattern and status",
            ("method", "route", "status"),
            [(labels, counts.count) for labels, counts in requests],
        )
        yield histogram_family(
            "tuco_http_request_duration_seconds",
            "time from a request's dispatch to its answer being ready, by method, route pattern and status",
            ("method", "route", "status"),
            requests,
        )
        yield labelled_counter_family(
            "tuco_http_requests_refused",
            "requests refused before they were complete (malformed, too large, too slow), by status",
            ("status",),
            [((str(status),), n) for status, n in sorted(self.refused.items())],
        )
