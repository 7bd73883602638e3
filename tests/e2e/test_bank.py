"""The bank on the real server: transfers by transaction through kill -9 rounds (file log) and database faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.e2e.bank import ACCOUNTS, Ledger, account, check, clients, lister, open_accounts, watcher
from tests.e2e.process import TucoProcess
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
