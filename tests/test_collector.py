"""The cyclic collector under steady writes (tuco.collector): small young generations, nothing leaked to the old one.

Measured through the real service on a real file log, with the history trimming as it does in production
(that trimming frees as many containers as the writes make, which is what kept CPython's own trigger from
firing). Object counts, not times: a count is exact and the same on any machine.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from tuco.collector import COLLECT_EVERY, MIDDLE_EVERY, freeze_start_up
from tuco.core.origin import new_origin
from tuco.log.file import FileTransactionLog, SyncMode
from tuco.service import Service

WRITERS = 64
KEYS = 10_000
HISTORY_BYTES = 8 << 20  # about 21,000 changes


async def _write_steadily(tmp_path: Path, collections: list[int] | None = None) -> tuple[list[int], Service]:
    """Overwrite KEYS keys from WRITERS concurrent writers, as a server does after a restart.

    First 32,000 writes; then a restart, as ``tuco serve`` does it: replay, and
    :func:`~tuco.collector.freeze_start_up`; then 64,000 writes more, sampling the young generations' sizes
    every 6,400 of them. The history replay leaves is empty: it is full (and trimming, which is what balances
    CPython's count) for the last 43,000 of them, which made every change it still holds at the end. The
    service returned is running; the caller closes it. ``collections`` gets the generation of each collection
    started during the 64,000 writes.
    """
    origin = new_origin("writer")

    def service() -> Service:
        log = FileTransactionLog(tmp_path / "tuco.log", sync=SyncMode.EVERYSEC)
        return Service(log, history_bytes=HISTORY_BYTES)

    async def write(into: Service, number: int, rounds: int, young: list[int] | None) -> None:
        for round_ in range(rounds):
            await into.put(f"key-{(number * 7919 + round_ * 104729) % KEYS:06d}", b"v" * 64, origin=origin)
            if young is not None and number == 0 and round_ % 100 == 99:
                young.append(len(gc.get_objects(0)) + len(gc.get_objects(1)))

    first = service()
    await first.start()
    await asyncio.gather(*(write(first, number, 500, None) for number in range(WRITERS)))
    await first.aclose()
    restarted = service()
    await restarted.start()  # the replayed entries are made with the collector off, all of them tracked
    young: list[int] = []

    def started(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and collections is not None:
            collections.append(info["generation"])

    threshold = gc.get_threshold()
    freeze_start_up()
    gc.callbacks.append(started)
    try:
        await asyncio.gather(*(write(restarted, number, 1000, young) for number in range(WRITERS)))
    finally:
        gc.callbacks.remove(started)
        gc.unfreeze()
        gc.set_threshold(*threshold)
    return young, restarted


def test_steady_writes_keep_the_young_generations_small(tmp_path: Path) -> None:
    """The young generations never hold more than a few collections' worth of writes (178,000 objects unpaced)."""
    assert gc.isenabled()

    async def main() -> list[int]:
        young, service = await _write_steadily(tmp_path)
        await service.aclose()
        return young

    young = asyncio.run(main())
    assert len(young) == 10
    # Each applied event leaves an entry and a history change young (plus its batch's share of requests):
    # at most MIDDLE_EVERY young passes' worth waits for the middle pass.
    bound = 3 * COLLECT_EVERY * (MIDDLE_EVERY + 1)
    assert max(young) <= bound, young


def test_no_history_change_stays_tracked_into_the_old_generation(tmp_path: Path) -> None:
    """Each change is a tuple of plain values: once collected, the collector stops tracking it, never promotes it."""

    async def main() -> tuple[int, int, int]:
        _, service = await _write_steadily(tmp_path)
        history = service.store.history
        changes = history.changes_after(history.oldest_revision, len(history))
        old = len({id(obj) for obj in gc.get_objects(2)} & {id(change) for change in changes})
        tracked = sum(1 for change in changes if gc.is_tracked(change))
        await service.aclose()
        return old, tracked, len(changes)

    old, tracked, retained = asyncio.run(main())
    assert retained > 15_000  # the history is full and trimming
    assert old == 0
    assert tracked <= COLLECT_EVERY * (MIDDLE_EVERY + 1)  # only those no middle pass has reached yet


def test_a_batch_of_writes_in_flight_starts_no_collection_of_its_own(tmp_path: Path) -> None:
    """64 writers: young collections come from the pacer (one per COLLECT_EVERY writes), hardly ever from CPython.

    A write in flight holds its containers until its batch commits, so 64 writers took CPython's count past
    its threshold of 700 again and again: 183 collections during these 64,000 writes (140 of them the
    pacer's) before :func:`~tuco.collector.freeze_start_up` raised it, each visiting the batch in flight.
    Through the server, with a request, an answer and their slots per write, nearly every batch did.
    """
    collections: list[int] = []

    async def main() -> None:
        _, service = await _write_steadily(tmp_path, collections)
        await service.aclose()

    asyncio.run(main())
    paced = 64_000 // COLLECT_EVERY  # 125 young ones, a middle one after every MIDDLE_EVERY of them
    assert paced + paced // MIDDLE_EVERY <= len(collections) <= paced + paced // MIDDLE_EVERY + 10, len(collections)
