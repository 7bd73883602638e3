"""The bank on the real server: transfers by transaction through kill -9 rounds (file log) and database faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.e2e.bank import ACCOUNTS, Ledger, account, check, clients, lister, open_accounts, watcher
from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess
from tests.fix_db import fetch
from tuco.client import AsyncClient, Listed

StartTuco = Callable[..., TucoProcess]

pytestmark = [pytest.mark.xdist_group("heavy"), pytest.mark.slow]


async def final_accounts(url: str) -> dict[str, dict[str, object]]:
    async with AsyncClient(url) as client:
        txn = client.txn()
        txn.then.list("acct/", 100)
        listed = (await txn.commit()).results[0]
        assert isinstance(listed, Listed) and len(listed.items) == len(ACCOUNTS)
        return {item.key: account(item) for item in listed.items}


def test_the_bank_keeps_its_total_through_kill_9_rounds(tuco: StartTuco) -> None:
    """16 clients, 25 transfers each per round, three rounds each ended by SIGKILL: every property holds."""
    server = tuco()
    ledger = Ledger()

    async def round(number: int, kill: bool) -> None:
        stop = asyncio.Event()
        side = [
            asyncio.create_task(lister(server.url, ledger, stop)),
            asyncio.create_task(watcher(server.url, ledger, stop)),
        ]
        work = asyncio.create_task(clients([server.url], 16, 25, number, ledger, number))
        if kill:
            while len(ledger.acknowledged) < 150 * (number + 1) and not work.done():
                await asyncio.sleep(0.01)
            server.kill()
        await work
        stop.set()
        side[1].cancel()  # the watch stream waits for its next change or heartbeat: end it now
        await asyncio.gather(*side)

    async def main() -> None:
        await open_accounts(server.url)
        for number in range(3):
            await round(number, kill=True)
            server.start()
        await round(3, kill=False)
        check(ledger, await final_accounts(server.url))
        assert len(ledger.acknowledged) >= 400
        assert len(ledger.watched) >= 200 and len(ledger.totals) >= 20

    asyncio.run(main())


TERMINATE = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'tuco'"""


@pytest.mark.postgres
def test_the_bank_on_two_postgresql_replicas_through_terminated_backends_and_a_kill(
    tuco: StartTuco, pg_dsn: str
) -> None:
    """16 clients on two replicas; backends terminated twice and one replica SIGKILLed: every property holds."""

    def replica(name: str) -> TucoProcess:
        return tuco(
            TUCO_LOG_BACKEND="postgres",
            TUCO_DATABASE_URL=pg_dsn,
            TUCO_DATA_DIR=f"/nonexistent/{name}",
            TUCO_PORT=str(free_port()),
            TUCO_DATABASE_WRITE_TIMEOUT_SECONDS="30",
            TUCO_POLL_INTERVAL_SECONDS="0.1",
        )

    servers = [replica("a"), replica("b")]
    urls = [server.url for server in servers]
    ledger = Ledger()

    async def main() -> None:
        await open_accounts(urls[0])
        for number, fault in enumerate(("terminate", "terminate", "kill")):
            stop = asyncio.Event()
            side = [
                asyncio.create_task(lister(urls[0], ledger, stop)),
                asyncio.create_task(watcher(urls[1], ledger, stop)),
            ]
            work = asyncio.create_task(clients(urls, 16, 20, number, ledger, number))
            while len(ledger.acknowledged) < 100 * number + 60 and not work.done():
                await asyncio.sleep(0.01)
            if fault == "terminate":
                terminated = (await fetch(pg_dsn, TERMINATE))[0][0]
                assert terminated >= 2
            else:
                servers[1].kill()
            await work
            stop.set()
            side[1].cancel()
            await asyncio.gather(*side)
            if fault == "kill":
                servers[1].start()
        check(ledger, await final_accounts(urls[1]))
        assert len(ledger.acknowledged) >= 300

    asyncio.run(main())
