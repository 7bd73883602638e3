"""A running snapshot as the async iterator a stream sends: from the store in memory, or from the log's state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence

from tuco.core.snapshot import Item, KeyRecord, LeaseRecord, SnapshotEncoder
from tuco.core.snapshots import Snapshots, SnapshotState
from tuco.errors import SnapshotError
from tuco.ports import StateSnapshots, TransactionLog

__all__ = ["DatabaseSnapshot", "DatabaseSnapshots", "SnapshotStream"]


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


class DatabaseSnapshot:
    """A snapshot read from the log's own state (a replica without a full copy), as the same async iterator of bytes.

    :meth:`open` starts the database's transaction and learns the revision; the
    records are framed as they arrive, one batch at a time.
    """

    __slots__ = ("_batches", "_done", "_encoder", "_on_close", "_pending", "revision")

    def __init__(
        self, batches: AsyncGenerator[tuple[int, Sequence[Item]]], on_close: Callable[[], None], taken_at: int
    ) -> None:
        self._batches = batches
        self._on_close = on_close
        self._pending: list[bytes] = []
        self._done = False
        self._encoder = SnapshotEncoder(0, taken_at)
        self.revision = 0

    async def open(self) -> DatabaseSnapshot:
        """Read the revision and the leases and tokens; raises the log's error (the snapshot is then closed)."""
        try:
            revision, first = await anext(self._batches)
        except BaseException as exc:  # closed after the except: nothing is awaited inside one (see bench/compiled.py)
            failed: BaseException | None = exc
        else:
            failed = None
        if failed is not None:
            await self.aclose()
            raise failed
        self.revision = self._encoder.revision = revision
        self._pending = [self._encoder.header(), *(_framed(self._encoder, item) for item in first)]
        return self

    def __aiter__(self) -> DatabaseSnapshot:
        return self

    async def __anext__(self) -> bytes:
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            return data
        if self._done:
            raise StopAsyncIteration
        batch: Sequence[Item] | None = None
        failed: BaseException | None = None
        try:
            _, batch = await anext(self._batches)
        except StopAsyncIteration:
            self._done = True
        except BaseException as exc:
            failed = exc
        if batch is None:
            await self.aclose()
            if failed is not None:
                raise failed
            return self._encoder.trailer()
        return b"".join([_framed(self._encoder, item) for item in batch])

    async def aclose(self) -> None:
        closing = self._on_close
        self._on_close = _nothing
        closing()
        await self._batches.aclose()

    def close(self) -> None:
        """End it without waiting (HEAD): the transaction ends when the generator is collected."""
        closing = self._on_close
        self._on_close = _nothing
        closing()


def _nothing() -> None:
    return None


def _framed(encoder: SnapshotEncoder, item: Item) -> bytes:
    if isinstance(item, KeyRecord):
        return encoder.key(item)
    if isinstance(item, LeaseRecord):
        return encoder.lease(item)
    return encoder.token(item)


class DatabaseSnapshots:
    """The snapshots a read-through replica reads from its log, counted against the same cap as the others."""

    __slots__ = ("running",)

    def __init__(self) -> None:
        self.running = 0

    async def open(self, log: TransactionLog, max_running: int) -> DatabaseSnapshot:
        """A snapshot of ``log``'s own state at its head; SnapshotError over the cap or for a log that cannot."""
        if not isinstance(log, StateSnapshots):
            raise SnapshotError("this replica holds no full copy and its log cannot read its state: ask a full one")
        if self.running >= max_running:
            raise SnapshotError(f"{max_running} snapshots are being taken already; try again when one ends")
        self.running += 1
        opening = DatabaseSnapshot(log.snapshot_state(log.now_ms()), self._ended, int(time.time() * 1000))
        return await opening.open()

    def _ended(self) -> None:
        self.running -= 1
