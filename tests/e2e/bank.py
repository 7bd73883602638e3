"""The bank: accounts moved between by transactions, and what must hold of them whatever the faults.

Each account is one key holding JSON ``{"balance": n, "ids": [...]}``: the ids of the transfers
applied to it. A transfer reads both accounts in one transaction, then commits compare-both-
mod_revisions, put-both; a refused compare is retried with fresh reads. Checked: the total is the
same in every listing (each one page, at one revision); every acknowledged transfer is in both of
its accounts exactly once, every unacknowledged one in both or neither; a watcher never sees one
side of a transfer without the other at the same revision.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from tuco.client import AsyncClient, Item, Listed
from tuco.errors import TucoError

ACCOUNTS = [f"acct/{n:02d}" for n in range(20)]
OPENING = 100
TOTAL = OPENING * len(ACCOUNTS)


@dataclass
class Ledger:
    """What the clients saw: transfers acknowledged, transfers whose outcome is unknown, listings' totals."""

    acknowledged: dict[str, tuple[str, str]] = field(default_factory=dict)
    uncertain: dict[str, tuple[str, str]] = field(default_factory=dict)
    totals: list[tuple[int, int]] = field(default_factory=list)  # (revision, total)
    watched: list[tuple[int, str, dict[str, object]]] = field(default_factory=list)  # complete revisions only


def account(item: Item | None) -> dict[str, object]:
    assert item is not None and item.value is not None
    found = json.loads(item.value)
    assert isinstance(found, dict)
    return found


async def open_accounts(url: str) -> None:
    """Every account with its opening balance, in one transaction."""
    async with AsyncClient(url) as client:
        txn = client.txn()
        for name in ACCOUNTS:
            txn.when(name, "exists", "==", False)
            txn.then.put(name, json.dumps({"balance": OPENING, "ids": []}))
        result = await txn.commit()
        assert result.succeeded


async def transfer(client: AsyncClient, source: str, target: str, amount: int, id: str, ledger: Ledger) -> bool:
    """One transfer, retried on a refused compare; False if the server went away (outcome unknown)."""
    while True:
        try:
            read = await _read(client, source, target)
        except (TucoError, httpx.HTTPError):
            return False
        (one, one_rev), (two, two_rev) = read
        if id in one["ids"]:  # type: ignore[operator]  # a retry after an unknown outcome found it applied
            return True
        one = {"balance": int(one["balance"]) - amount, "ids": [*one["ids"], id]}  # type: ignore[call-overload, misc]
        two = {"balance": int(two["balance"]) + amount, "ids": [*two["ids"], id]}  # type: ignore[call-overload, misc]
        txn = client.txn().when(source, "mod_revision", "==", one_rev).when(target, "mod_revision", "==", two_rev)
        txn.then.put(source, json.dumps(one)).put(target, json.dumps(two))
        ledger.uncertain[id] = (source, target)
        try:
            result = await txn.commit()
        except (TucoError, httpx.HTTPError):
            return False
        if result.succeeded:
            del ledger.uncertain[id]
            ledger.acknowledged[id] = (source, target)
            return True
        del ledger.uncertain[id]


async def _read(client: AsyncClient, source: str, target: str) -> tuple[tuple[dict[str, object], int], ...]:
    txn = client.txn()
    txn.then.get(source).get(target)  # both at one revision
    result = await txn.commit()
    return tuple((account(item), item.mod_revision) for item in result.results)


async def clients(urls: Sequence[str], count: int, transfers: int, seed: int, ledger: Ledger, round: int) -> None:
    """``count`` clients, each making ``transfers`` transfers (or stopping when its server is gone)."""

    async def one(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        async with AsyncClient(urls[number % len(urls)]) as client:
            for n in range(transfers):
                source, target = rng.sample(ACCOUNTS, 2)
                if not await transfer(client, source, target, rng.randint(1, 30), f"r{round}c{number}t{n}", ledger):
                    return

    await asyncio.gather(*(one(number) for number in range(count)))


async def lister(url: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """List the accounts until told to stop (or the server is gone), recording each listing's revision and total."""
    async with AsyncClient(url) as client:
        while not stop.is_set():
            txn = client.txn()
            txn.then.list("acct/", 100)
            try:
                result = await txn.commit()
            except (TucoError, httpx.HTTPError):
                return
            listed = result.results[0]
            assert isinstance(listed, Listed) and not listed.more
            ledger.totals.append((result.revision, sum(int(account(item)["balance"]) for item in listed.items)))  # type: ignore[call-overload]
            await asyncio.sleep(0.005)


async def watcher(url: str, ledger: Ledger, stop: asyncio.Event) -> None:
    """Watch the accounts; keep each revision's events once a later revision shows it arrived whole."""
    pending: list[tuple[int, str, dict[str, object]]] = []
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=None) as http,
            http.stream("GET", "/v1/watch", params={"prefix": "acct/"}) as response,
        ):
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
                    if fields.get("event") != "put":
                        continue
                    data = json.loads(fields["data"])
                    revision = int(data["revision"])
                    if pending and pending[-1][0] != revision:
                        ledger.watched.extend(pending)
                        pending = []
                    pending.append((revision, data["key"], json.loads(base64.b64decode(data["value"]))))
                if stop.is_set():
                    return
    except (httpx.HTTPError, asyncio.CancelledError):
        return


def check(ledger: Ledger, final: dict[str, dict[str, object]]) -> None:
    """Every property the bank promises, against the final accounts."""
    assert sum(int(a["balance"]) for a in final.values()) == TOTAL  # type: ignore[call-overload]
    assert ledger.totals and all(total == TOTAL for _, total in ledger.totals), ledger.totals[:5]
    seen: dict[str, list[str]] = {}
    for name, found in final.items():
        ids = found["ids"]
        assert isinstance(ids, list)
        assert len(ids) == len(set(ids)), f"{name} applied a transfer twice"
        for id in ids:
            seen.setdefault(id, []).append(name)
    for id, (source, target) in ledger.acknowledged.items():
        assert sorted(seen.get(id, [])) == sorted([source, target]), id
    for id, places in seen.items():
        assert len(places) == 2, f"transfer {id} is in {places} only"
    by_revision: dict[int, list[tuple[str, dict[str, object]]]] = {}
    for revision, key, value in ledger.watched:
        by_revision.setdefault(revision, []).append((key, value))
    for revision, changes in by_revision.items():
        if len(changes) == len(ACCOUNTS):
            continue  # the opening
        assert len(changes) == 2, f"revision {revision}: a watcher saw {[k for k, _ in changes]}"
        (_, one), (_, two) = changes
        assert one["ids"][-1] == two["ids"][-1], revision  # type: ignore[index]
