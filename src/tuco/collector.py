"""The cyclic collector paced by applied writes: many small young collections instead of rare huge ones.

CPython starts a young collection when its count of container allocations minus deallocations passes 700.
A steady stream of writes keeps that count near zero: each write makes an entry and a history change, and
trimming the history frees as many old ones. The collector then never runs, while every new container
stays in the young generation: 178,000 of them after 192,000 writes, measured, and the one collection
that finally comes scans them all and stalls the event loop for 10 to 40 ms (the PUT p99). Counting
applied events instead bounds each collection to the writes since the last one.

The other way round, a batch of writes in flight holds about eleven containers a write (its mutation,
its future, its answer's slot, the request...) until the batch is committed: 64 writers take the count
past 700 in nearly every batch, and each of those collections visits the whole batch, alive and about to
be freed by reference counting anyway. ``tuco serve`` raises that threshold to
:data:`YOUNG_THRESHOLD` (:func:`freeze_start_up`); the pacer still collects after every 512 writes.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["COLLECT_EVERY", "MIDDLE_EVERY", "YOUNG_THRESHOLD", "CollectorPacer", "freeze_start_up"]

COLLECT_EVERY: Final = 512
"""Applied events between two young collections: each then scans a few thousand objects (well under 1 ms)."""
MIDDLE_EVERY: Final = 8
"""Young collections between two collections of the middle generation (what a young one leaves tracked)."""
YOUNG_THRESHOLD: Final = 5000
"""Containers allocated (net) before CPython's own young collection, instead of 700: about 450 writes in flight."""


class CollectorPacer:
    """Runs the young collection every :data:`COLLECT_EVERY` applied events; :meth:`applied` is the hot path."""

    __slots__ = ("_events", "_young")

    def __init__(self) -> None:
        self._events = 0
        self._young = 0

    def applied(self) -> None:
        """Note one applied event; collect once enough have been."""
        self._events += 1
        if self._events >= COLLECT_EVERY:
            self._collect()

    def _collect(self) -> None:
        self._events = 0
        if not gc.isenabled():  # whoever disabled it (a replay, a test) meant it
            return
        self._young += 1
        if self._young >= MIDDLE_EVERY:
            self._young = 0
            # The young pass first: a change is untracked only once the tuples it holds are, and a young
            # pass reaches the newest changes before their batch's origin and replaced entries (the order
            # its reachability walk leaves). After it, the middle pass stops tracking every one of them,
            # instead of promoting the newest, still tracked, to the old generation.
            gc.collect(0)
            gc.collect(1)
        else:
            gc.collect(0)


def freeze_start_up() -> None:
    """Collect, then freeze what start-up made: the collector never visits it again.

    The store's dict and the history's list are made before replay and live as long as the process. Their
    entries are tuples, so each write re-tracks them, and every full collection would then visit every key
    and change: measured 16 to 78 ms with 100k keys, the relaxed-PUT p99. Frozen, they are never traversed
    (what they hold is still freed by reference counting). What is frozen is start-up's: modules, settings,
    the service; a frozen object that later dies in a cycle would be kept, and the only such candidates
    (connections open during replay) break their cycles on close.

    Collected first: that stops tracking the replayed entries and the constant origins, tuples of plain
    values. Frozen while still tracked, each would keep the history change that replaces it tracked too, and
    the full collections would visit those. It costs about 0.15 s once for a million keys.

    Then the young generation's threshold is raised to :data:`YOUNG_THRESHOLD` (see the module's notes).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
