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
from bisect import bisect_left
from collections.abc import Iterator
from typing import Final

import structlog

from tuco.core.distribution import SECONDS_BOUNDS, Distribution
from tuco.http.messages import Request
from tuco.observability import Family, Metrics, histogram_family, labelled_counter_family

__all__ = ["MAX_REQUEST_ID_BYTES", "RequestObserver", "usable_request_id"]

MAX_REQUEST_ID_BYTES = 128
# Final: in the compiled build, a C static read per use instead of a lookup in the module's dict (some 250
# instructions each, a dozen or more a request; bench/instructions.py). The request path's constants are Final.
_FIRST_BOUND: Final = SECONDS_BOUNDS[0]
_bisect_left: Final = bisect_left
_logger = structlog.get_logger("tuco.access")
clock: Final = time.perf_counter


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

    def answered(self, request: Request, status: int, started: float) -> bytes | None:
        """Count one answer to ``request``, dispatched at ``started`` (:func:`clock`); the id to echo, if any.

        The id is the client's ``X-Request-Id`` if usable, else, with the access
        log on, a new one (so a log line and a response can be matched). The
        common case (no id, no access log) is a dict lookup and two additions.
        """
        seconds = clock() - started
        key = (request.method, request.route, status)
        counts = self.answers.get(key)
        if counts is None:
            counts = self.answers[key] = Distribution(SECONDS_BOUNDS)
        counts.sum += seconds
        counts.counts[0 if seconds <= _FIRST_BOUND else _bisect_left(SECONDS_BOUNDS, seconds)] += 1
        if request.request_id is None and not self.access_log:
            return None
        return self._identify(request, status, seconds)

    def _identify(self, request: Request, status: int, seconds: float) -> bytes | None:
        """The id to echo, and the access-log line."""
        request_id = request.request_id
        if request_id is not None and not usable_request_id(request_id):
            request_id = None
        if not self.access_log:
            return request_id
        if request_id is None:
            request_id = f"{self._prefix}{next(self._ids):x}".encode()
        _logger.info(
            "access",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            route=request.route,
            status=status,
            duration_ms=round(seconds * 1000, 3),
            request_id=request_id.decode("ascii"),
            client=request.client,
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
