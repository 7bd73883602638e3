"""A key (or lease) whose deadline passed while the server was down: gone at start, deleted once, on every log.

The start-up path is the replay (``apply_batch``, or PostgreSQL's bootstrap from its state
table) followed by the expirer's first rounds: right after ``start()`` returns, before the
loop has run the expirer at all, reads must already hide what expired; then exactly one
DELETE per key, and the lease's revoke, are written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.fix_db import fetch
from tests.http.test_ttl import Clock, expirer_rounds, until
from tuco.core.events import EventType
from tuco.core.store import ExpiringEntry
from tuco.errors import NoSuchKeyError
from tuco.log.batching import wall_clock_ms
from tuco.log.file import FileTransactionLog
from tuco.log.postgres import PostgresTransactionLog
from tuco.ports import TransactionLog
from tuco.service import Service
from tuco.testing import MemoryLog

Events = Callable[[], Awaitable[list[tuple[EventType, str]]]]


async def _write_before_the_stop(service: Service, short_ms: int) -> int:
    """A key with a short ttl, one on a short lease, one that outlives the stop; returns the lease's deadline."""
    await service.put_expiring("soon", b"a", None, ttl_ms=short_ms)
    lease = await service.grant(short_ms)
    await service.put_expiring("leased", b"c", None, lease=lease.lease)
    await service.put_expiring("later", b"b", None, ttl_ms=3_600_000)
    await service.put("plain", b"p")
    return lease.deadline


async def _check_the_restart(service: Service, events: Events) -> None:
    """Start past the short deadlines: hidden before the expirer ran once, then one DELETE each and one revoke.

    ``events`` reads what the log holds; it is called while ``service`` has the log closed.
    """
    before = len(await events())
    await service.start()
    # No await since start() returned: the expirer task has not run yet; reads hide the expired keys by themselves.
    for key in ("soon", "leased"):
        with pytest.raises(NoSuchKeyError):
            service.get(key)
    with pytest.raises(ExpiringEntry):
        service.get("later")
    page = service.page("", after=None, limit=10, revision=None)
    assert [item.key for item in page.items] == ["later", "plain"]
    await until(lambda: service.expired_keys == 2, timeout=30.0)
    await expirer_rounds(service, 4)  # and nothing more is written
    assert service.get("plain")[0] == b"p"
    await service.aclose()
    written = (await events())[before:]
    assert sorted(written) == sorted(
        [(EventType.DELETE, "soon"), (EventType.DELETE, "leased"), (EventType.LEASE_REVOKE, "")]
    )


def test_on_the_memory_log_with_the_clock_moved_while_it_was_down() -> None:
    """The memory log reopened after the clock moved 5 s past a 1 s ttl and a 2 s lease."""

    async def main() -> None:
        clock = Clock()
        log = MemoryLog(clock=clock)
        first = Service(log)
        await first.start()
        await _write_before_the_stop(first, 1_000)
        await first.aclose()
        clock.advance(5_000)
        reopened = MemoryLog(log.events, clock=clock)

        async def events() -> list[tuple[EventType, str]]:
            return [(event.type, event.key) for event in reopened.events]

        await _check_the_restart(Service(reopened), events)

    asyncio.run(main())


def test_on_the_file_log_restarted_after_the_deadlines(tmp_path: Path) -> None:
    """The file log reopened once this machine's clock passed a 300 ms ttl and lease."""
    path = tmp_path / "tuco.log"

    async def events() -> list[tuple[EventType, str]]:
        log = FileTransactionLog(path, compact_min_bytes=0)
        found = [(event.type, event.key) async for batch in log.read_events() for event in batch]
        await log.aclose()
        return found

    async def main() -> None:
        first = Service(FileTransactionLog(path, compact_min_bytes=0))
        await first.start()
        deadline = await _write_before_the_stop(first, 300)
        await first.aclose()
        await _wait_past(deadline, wall_clock_ms)
        await _check_the_restart(Service(FileTransactionLog(path, compact_min_bytes=0)), events)

    asyncio.run(main())


@pytest.mark.postgres
def test_on_postgres_bootstrapped_after_the_deadlines(pg_dsn: str) -> None:
    """A replica that bootstraps from tuco_state once the database's clock passed a 300 ms ttl and lease."""

    async def events() -> list[tuple[EventType, str]]:
        rows = await fetch(pg_dsn, "SELECT type, key FROM tuco_events ORDER BY sequence")
        return [(EventType(row[0]), bytes(row[1]).decode()) for row in rows]

    async def main() -> None:
        log: TransactionLog = PostgresTransactionLog(pg_dsn)
        first = Service(log)
        await log.open()
        await first.start()
        deadline = await _write_before_the_stop(first, 300)
        await first.aclose()
        second = PostgresTransactionLog(pg_dsn)
        await second.open()
        await _wait_past(deadline, second.now_ms)
        await _check_the_restart(Service(second), events)

    asyncio.run(main())


async def _wait_past(deadline: int, now_ms: Callable[[], int]) -> None:
    """Until the log's clock is past ``deadline`` (a condition, not a duration: the machine may be slow)."""
    await until(lambda: now_ms() > deadline + 50, timeout=30.0)
