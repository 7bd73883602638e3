"""Stopping a helper task without swallowing a cancel meant for the caller (the server's and the client's).

A leaf module: asyncio alone, so the client imports it without importing the server.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["stop_task"]


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; a cancel of the caller arriving meanwhile still propagates.

    ``task.cancel()`` then awaiting it under ``suppress(CancelledError)`` also swallowed the caller's own
    cancel, and an ``asyncio.timeout`` around a session's close never fired: the close went on to revoke (and a
    log's or the expirer's close went on closing).
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # ours, not only the stopped task's
            raise
