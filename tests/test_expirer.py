"""The expirer on a clock the test moves and rounds the test steps: no wall-clock deadline, no fixed sleep."""

from __future__ import annotations

import asyncio

from tests.log.helpers import cancel_while_it_stops
from tuco.core.events import EventType
from tuco.expirer import Expirer
from tuco.service import Service
from tuco.testing import MemoryLog

START = 1_800_000_000_000  # Unix ms: any fixed moment


class Rounds:
    """An expirer ``sleep`` that returns at once and counts the rounds that asked for it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


async def _rounds(expirer: Expirer, more: int) -> None:
    """Until ``more`` rounds ended (each yields once, so a few loop turns suffice)."""
    target = expirer.rounds + more
    for _ in range(10_000):
        if expirer.rounds >= target:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"the expirer did not finish {more} rounds")


def test_a_key_expires_when_the_injected_clock_passes_its_deadline_and_not_before() -> None:
    """A 1 s key outlives rounds at 999 ms of the test clock; a round after 1 s writes its one DELETE."""

    async def main() -> None:
        now = [START]
        log = MemoryLog(clock=lambda: now[0])
        service = Service(log)
        await service.start()
        await service.expirer.aclose()  # the service's own expirer polls on real time: this test steps its own
        rounds = Rounds()
        expirer = Expirer(service.store, log, now_ms=lambda: now[0], sleep=rounds)
        expirer.start()
        try:
            await service.put_expiring("k", b"v", None, ttl_ms=1000)
            now[0] += 999
            await _rounds(expirer, 3)
            assert [event.type for event in log.events] == [EventType.PUT]
            now[0] += 1
            await _rounds(expirer, 3)
            assert [(event.type, event.key) for event in log.events] == [(EventType.PUT, "k"), (EventType.DELETE, "k")]
            assert expirer.expired_keys == 1
            assert rounds.waits and max(rounds.waits) <= 0.05  # it looks again within the poll interval
        finally:
            await expirer.aclose()
            await service.aclose()

    asyncio.run(main())


def test_the_service_counts_its_expirer_s_rounds_and_expired_keys() -> None:
    """``Service.expiry_rounds`` and ``expired_keys`` are its expirer's counts, what "did not happen" checks wait on."""

    async def main() -> None:
        service = Service(MemoryLog(clock=lambda: START))
        assert (service.expiry_rounds, service.expired_keys) == (0, 0)
        await service.start()
        try:
            seen = service.expiry_rounds
            for _ in range(3000):  # rounds come every 50 ms; 30 s is a stuck expirer
                if service.expiry_rounds >= seen + 2:
                    break
                await asyncio.sleep(0.01)
            assert service.expiry_rounds == service.expirer.rounds
            assert service.expired_keys == service.expirer.expired_keys == 0
        finally:
            await service.aclose()

    asyncio.run(main())


def test_a_cancel_of_aclose_reaches_its_caller() -> None:
    """Expirer.aclose cancelled while it waits for its task to end raises CancelledError, as a timeout needs."""

    async def main() -> None:
        service = Service(MemoryLog())
        await service.start()
        expirer = service.expirer
        running = expirer._task
        assert await cancel_while_it_stops(expirer.aclose(), lambda: running)
        await service.aclose()

    asyncio.run(main())
