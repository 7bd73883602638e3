"""Shared by the file log tests: open a log the way the service does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tuco.core.store import Store
from tuco.log.file import FileTransactionLog, LogReader


async def open_log(path: Path, **options: Any) -> tuple[FileTransactionLog, Store]:
    """Replay ``path`` into a new store and start the log, with that store's entries as what compaction rewrites."""
    store = Store()
    log = FileTransactionLog(path, entries=store.entries, **options)
    log.entry_bytes = store.entry_bytes  # as the assembly wires it: the next compaction sized from the store's count
    try:
        async for batch in log.read_events():
            store.apply_batch(batch)
        await log.run(store)
    except BaseException:
        await log.aclose()
        raise
    return log, store


async def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` on the event loop until it is true; fail naming ``what`` after a generous deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.005)


def disk_bytes(path: Path) -> bytes:
    """The file's bytes through a separate open; blocking on purpose, as the tests want them now."""
    with open(path, "rb") as file:
        return file.read()


def replay_fixture(path: Path) -> Store:
    """The store a fixture log replays to, checking that the whole file was read without a problem."""
    store = Store()
    reader = LogReader(path)
    for batch in reader:
        store.apply_batch(batch)
    assert reader.report is not None and reader.report.problem is None
    return store


async def cancel_while_it_stops(
    closing: Coroutine[Any, Any, None], stopped: Callable[[], asyncio.Task[Any] | None]
) -> bool:
    """Run ``closing`` and cancel it once it cancelled the task ``stopped()`` names; whether the cancel reached it.

    A close that cancels a helper task and then awaits it under ``suppress(CancelledError)`` also swallows a
    cancel meant for itself (an ``asyncio.timeout`` around it would never fire).
    """
    closer = asyncio.ensure_future(closing)
    for _ in range(10_000):
        task = stopped()
        if task is not None and task.cancelling():
            break
        await asyncio.sleep(0)
    else:
        raise AssertionError("the close never cancelled the task")
    closer.cancel()
    try:
        await closer
    except asyncio.CancelledError:
        return True
    return False
