"""The asyncio flavour of the coordination helpers against a real ``tuco serve``: sessions, locks, elections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.e2e.process import TucoProcess
from tuco.client import AsyncClient, Leader, LockTimeoutError, SessionLostError

StartTuco = Callable[..., TucoProcess]


def test_async_lock_waits_past_its_ttl_and_fences_in_order(tuco: StartTuco) -> None:
    """Two async sessions of ttl 1 s: the second waits 3 s for the lock, gets a higher token, and a timeout raises."""
    server = tuco()

    async def main() -> None:
        async with AsyncClient(server.url) as client, client.session(ttl=1) as first, client.session(ttl=1) as second:
            holder = first.lock("alocks/a")
            assert await holder.acquire() is True
            first_token = holder.check()
            with pytest.raises(LockTimeoutError):
                async with second.lock("alocks/a", timeout=0.2):
                    pass
            waiter = asyncio.create_task(second.lock("alocks/a").acquire())
            await asyncio.sleep(3.0)  # three times the ttl
            assert not waiter.done()
            await holder.release()
            assert await asyncio.wait_for(waiter, 30) is True
            keys = [item.key async for item in client.scan("alocks/a/", keys_only=True)]
            assert len(keys) == 1 and keys[0].startswith(f"alocks/a/{second.lease_id:016x}-")
            assert second.alive() and not second.lost.is_set()
            [newest] = [item async for item in client.scan("alocks/a/")]
            assert newest.create_revision > first_token

    asyncio.run(main())


def test_async_election_observe_and_session_loss(tuco: StartTuco) -> None:
    """An async observer sees a then b lead; a revoked session's leader learns it lost and cannot proclaim."""
    server = tuco()

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            lost: list[int] = []
            a = await client.session(ttl=2, on_lost=lambda session: lost.append(session.lease_id)).open()
            b = await client.session(ttl=2).open()
            seen: list[Leader | None] = []
            stream = a.election("ael/x").observe()

            async def follow() -> None:
                async for leader in stream:
                    seen.append(leader)
                    if len(seen) == 3:
                        return

            follower = asyncio.create_task(follow())
            while seen != [None]:
                await asyncio.sleep(0.02)
            ea, eb = a.election("ael/x"), b.election("ael/x")
            token_a = await ea.campaign("A")
            campaign_b = asyncio.create_task(eb.campaign("B"))
            while len([item async for item in client.scan("ael/x/", keys_only=True)]) < 2:
                await asyncio.sleep(0.02)  # b queued behind a: the leadership passes straight from a to b
            await client.revoke(a.lease_id)
            await asyncio.wait_for(a.lost.wait(), 10)
            assert lost == [a.lease_id] and not ea.is_leader()
            with pytest.raises(SessionLostError):
                await ea.proclaim("A again")
            token_b = await asyncio.wait_for(campaign_b, 30)
            await asyncio.wait_for(follower, 10)
            assert [(leader.value, leader.revision) if leader else None for leader in seen] == [
                None,
                (b"A", token_a),
                (b"B", token_b),
            ]
            assert (await eb.leader()) == seen[2]
            counter = client.counter("acount")
            assert await asyncio.gather(*(counter.increment() for _ in range(10))) is not None
            assert await counter.get() == 10
            await a.aclose()
            await b.aclose()

    asyncio.run(main())


def test_a_cancel_that_reaches_a_session_while_it_closes_is_not_swallowed(tuco: StartTuco) -> None:
    """A task cancelled while its session stops renewing ends cancelled (so ``asyncio.timeout`` around a close
    fires) instead of going on as if nothing came; its keep-alive context manager alike."""
    server = tuco()

    async def main() -> None:
        async with AsyncClient(server.url) as client:
            session = await client.session(ttl=5).open()
            closing = asyncio.create_task(session.aclose())
            await asyncio.sleep(0)  # it has cancelled the renewing task and waits for it to end
            closing.cancel()
            await asyncio.wait([closing])
            assert closing.cancelled()

            lease = await client.grant(5)
            after = asyncio.Event()

            async def keep() -> None:
                async with client.keep_alive(lease):
                    pass  # the exit cancels the renewing task and waits for it to end
                after.set()

            keeping = asyncio.create_task(keep())
            await asyncio.sleep(0)  # in that wait
            keeping.cancel()
            await asyncio.wait([keeping])
            assert keeping.cancelled() and not after.is_set()

    asyncio.run(main())
