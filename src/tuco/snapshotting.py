"""A running snapshot as the async iterator a stream sends: :meth:`tuco.service.Service.snapshot` returns one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from tuco.core.snapshots import Snapshots, SnapshotState

__all__ = ["SnapshotStream"]


class SnapshotStream:
    """A snapshot's chunks as an async iterator; closing it (or its end) ends the snapshot even if never started.

    An async generator that was never started runs no ``finally`` when closed:
    this one ends its snapshot (and drops its before images) whatever happens.
    """

    __slots__ = ("_chunks", "_snapshots", "_state")

    def __init__(self, snapshots: Snapshots, state: SnapshotState, chunks: Iterator[bytes | None]) -> None:
        self._snapshots = snapshots
        self._state = state
        self._chunks = chunks

    @property
    def revision(self) -> int:
        """The revision the snapshot is the state at."""
        return self._state.revision

    def __aiter__(self) -> SnapshotStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            for data in self._chunks:
                if data is not None:
                    return data
                await asyncio.sleep(0)  # between chunks, writes go on (keeping before images)
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """End the snapshot: the service stops keeping before images for it."""
        self._snapshots.end(self._state)
        self._chunks = iter(())
