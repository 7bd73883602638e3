"""Observations counted into buckets: the histograms behind ``/metrics``, kept as plain numbers.

Recording one costs a bisect and two additions, so the request path and the
commit loop can afford it; the Prometheus families are built from these
numbers only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

__all__ = ["BATCH_SIZE_BOUNDS", "SECONDS_BOUNDS", "Distribution"]

SECONDS_BOUNDS: Final[tuple[float, ...]] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Latency bucket bounds in seconds, 100 µs to 10 s (a loopback GET takes tens of µs, an fsync about a ms)."""

BATCH_SIZE_BOUNDS: Final[tuple[float, ...]] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
"""Bucket bounds for how many writes one commit carried."""


class Distribution:
    """How many observations fell in each bucket (not cumulative), and their sum.

    ``counts[i]`` holds those over ``bounds[i - 1]`` and at most ``bounds[i]``;
    the last one those over every bound. A hot path may update ``counts`` and
    ``sum`` itself, as :meth:`observe` does.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(bound, observations at or under it)`` per bound, ``inf`` last: Prometheus's ``le`` buckets."""
        running = 0
        out: list[tuple[float, int]] = []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out
