"""A watch reading old changes back from tuco_events while the database goes away: a cancel with where to resume."""

from __future__ import annotations

import asyncio

import pytest

from tests.fix_proxy import Proxy
from tuco.core.watch import Selector
from tuco.log.postgres import PostgresTransactionLog
from tuco.service import Service
from tuco.watchers import WatchStep


@pytest.mark.postgres
def test_a_read_back_cut_by_the_database_ends_with_its_resume_point_and_resumes_after(
    pg_dsn: str, pg_proxy: Proxy
) -> None:
    """Changes older than memory come from tuco_events; the database lost mid-way: cancel log_unavailable at N."""

    async def main() -> None:
        writer = Service(PostgresTransactionLog(pg_dsn))
        await writer.start()
        try:
            await asyncio.gather(*(writer.put(f"k{n % 50}", b"%d" % n) for n in range(1500)))
        finally:
            await writer.aclose()
        reader = Service(PostgresTransactionLog(pg_proxy.dsn, write_timeout=2.0))
        await reader.start()  # bootstrap: only the head is in memory
        try:
            assert reader.store.history.oldest_revision == 1500
            watch = reader.watch(Selector("k1"), 0)
            first = await watch.next()
            assert first.kind is WatchStep.EVENTS
            assert [e.revision for e in first.events] == [n + 1 for n in range(1000) if f"k{n % 50}".startswith("k1")]
            assert all(e.create_revision is None for e in first.events)  # tuco_events does not keep them
            pg_proxy.stop()
            cut = await asyncio.wait_for(watch.next(), 10)
            assert (cut.kind, cut.reason, cut.revision) == (WatchStep.CANCEL, "log_unavailable", 1001)
            watch.close()
            pg_proxy.start()
            resumed = reader.watch(Selector("k1"), cut.revision - 1)
            rest = await asyncio.wait_for(resumed.next(), 10)
            expected = [n + 1 for n in range(1000, 1500) if f"k{n % 50}".startswith("k1")]
            assert [e.revision for e in rest.events] == expected
            resumed.close()
            assert reader.hub is None  # nobody watches: apply is back to one attribute check
        finally:
            await reader.aclose()

    asyncio.run(main())
