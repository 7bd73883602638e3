"""Shared by the file log tests: open a log the way the service does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuco.core.store import Store
from tuco.log.file import FileTransactionLog


async def open_log(path: Path, **options: Any) -> tuple[FileTransactionLog, Store]:
    """Replay ``path`` into a new store and start the log, with that store as its compaction snapshot."""
    store = Store()
    log = FileTransactionLog(path, snapshot=store.snapshot, **options)
    try:
        async for batch in log.read_events():
            store.apply_batch(batch)
        await log.run(store.apply)
    except BaseException:
        await log.aclose()
        raise
    return log, store
