"""Fakes for testing code above the log, shipped with the package (like ``httpx.MockTransport``).

``MemoryLog`` is a complete in-memory :class:`~tuco.ports.TransactionLog`;
``FailingLogFile`` wraps a real log file and starts failing on command, to show
what the service does when its disk breaks.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path

from tuco.core.events import Event, EventType
from tuco.errors import LogError, LogFailedError
from tuco.log.batching import GroupCommit, Mutation
from tuco.log.file import OsLogFile
from tuco.ports import ApplyEvent

__all__ = ["FailingLogFile", "MemoryLog"]


class MemoryLog:
    """A transaction log kept in a list; same group-commit path as the real ones."""

    def __init__(self, events: Sequence[Event] = ()) -> None:
        self.events: list[Event] = list(events)
        self._commits = GroupCommit(self._commit)
        self.fail_next_commit: LogFailedError | None = None

    @property
    def failure(self) -> LogError | None:
        return self._commits.failure

    async def open(self) -> None:
        """Nothing to acquire: the list is already here."""

    async def read_events(self) -> AsyncIterator[Sequence[Event]]:
        yield list(self.events)

    async def run(self, apply: ApplyEvent) -> None:
        self._commits.start(apply)

    def write_put(self, key: str, value: bytes) -> Awaitable[Event]:
        return self._commits.submit(EventType.PUT, key, value)

    def write_delete(self, key: str) -> Awaitable[Event]:
        return self._commits.submit(EventType.DELETE, key)

    async def catch_up(self) -> None:
        """Nothing to catch up with: one process, one list."""

    def describe(self) -> Mapping[str, object]:
        return {"backend": "memory", "last_sequence": len(self.events)}

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Event]:
        if self.fail_next_commit is not None:
            raise self.fail_next_commit
        start = len(self.events) + 1
        events = [Event(start + i, m.type, m.key, m.value) for i, m in enumerate(batch)]
        self.events.extend(events)
        return events

    async def aclose(self) -> None:
        await self._commits.aclose()


class FailingLogFile(OsLogFile):
    """A real log file whose writes fail with ``ENOSPC`` once ``failing`` is set.

    Pass the class as ``FileTransactionLog(open_file=...)``; flip the class
    attribute ``failing`` (or set ``TUCO_TEST_FAIL_AFTER_BYTES`` before the
    process starts) to make the disk "fill up".
    """

    failing = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        limit = os.environ.get("TUCO_TEST_FAIL_AFTER_BYTES")
        self._budget = int(limit) if limit else None

    def write(self, data: bytes) -> None:
        if self._budget is not None:
            if len(data) > self._budget:
                type(self).failing = True
            else:
                self._budget -= len(data)
        if type(self).failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().write(data)
