"""Sessions, locks, semaphores, elections and counters of tuco.client against a real ``tuco serve``."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tests.fix_db import eventually
from tuco.client import Client, Leader, LockTimeoutError, Session, SessionLostError
from tuco.client import _lock as lock_module
from tuco.errors import NoSuchKeyError

StartTuco = Callable[..., TucoProcess]


def _queued(client: Client, prefix: str, count: int) -> bool:
    return len(_holders(client, prefix)) == count


def _holders(client: Client, prefix: str) -> list[str]:
    return [item.key for item in client.scan(prefix, keys_only=True)]


def test_a_waiter_longer_than_its_ttl_still_gets_the_lock(tuco: StartTuco) -> None:
    """The README trap: a waiter whose session ttl is 1 s waits 4 s, and gets the lock with a higher token."""
    server = tuco()
    with Client(server.url) as client, client.session(ttl=1) as first, client.session(ttl=1) as second:
        holder = first.lock("locks/job")
        assert holder.acquire() is True
        assert holder.token is not None and holder.held
        tokens: list[int] = []
        errors: list[BaseException] = []

        def wait_for_it() -> None:
            try:
                with second.lock("locks/job") as lock:
                    tokens.append(lock.check())
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        eventually(lambda: len(_holders(client, "locks/job/")) == 2, what="the waiter queues")
        time.sleep(4.0)  # four times the waiter's ttl: without renewals its key would be gone
        assert (tokens, errors) == ([], [])
        assert len(_holders(client, "locks/job/")) == 2
        first_token = holder.token
        holder.release()
        waiter.join(30)
        assert errors == []
        assert len(tokens) == 1 and tokens[0] > first_token
        assert _holders(client, "locks/job/") == []
        assert second.alive() and not second.lost.is_set()


def test_tokens_increase_and_release_is_conditional_on_our_revision(tuco: StartTuco) -> None:
    """A holder whose lease was revoked learns it lost; its late release leaves the next holder's key alone."""
    server = tuco()
    lost: list[int] = []
    with Client(server.url) as client:
        first = Session(client, ttl=3, on_lost=lambda session: lost.append(session.lease_id)).open()
        second = client.session(ttl=3).open()
        try:
            old = first.lock("locks/x")
            assert old.acquire(timeout=5) is True
            old_token = old.check()
            client.revoke(first.lease_id)  # the lease ends under the holder (an expiry looks the same)
            assert first.lost.wait(10) is True
            assert lost == [first.lease_id]
            assert old.held is False
            with pytest.raises(SessionLostError):
                old.check()
            new = second.lock("locks/x")
            assert new.acquire(timeout=5) is True
            assert new.check() > old_token
            old.release()  # late and stale: must not touch the new holder's key
            assert _holders(client, "locks/x/") == [new.key]
            new.release()
            assert _holders(client, "locks/x/") == []
        finally:
            first.close()
            second.close()


def test_acquire_times_out_and_leaves_nothing_behind(tuco: StartTuco) -> None:
    """A timed-out acquire returns False (the context manager raises) and withdraws its queued key."""
    server = tuco()
    with Client(server.url) as client, client.session(ttl=5) as first, client.session(ttl=5) as second:
        with first.lock("locks/t") as held:
            assert second.lock("locks/t").acquire(timeout=0.3) is False
            with pytest.raises(LockTimeoutError), second.lock("locks/t", timeout=0.2):
                pass
            assert _holders(client, "locks/t/") == [held.key]
        assert _holders(client, "locks/t/") == []


def test_a_semaphore_admits_its_limit_and_then_the_next(tuco: StartTuco) -> None:
    """Two slots: two sessions hold at once, a third waits until one leaves."""
    server = tuco()
    with Client(server.url) as client:
        sessions = [client.session(ttl=5).open() for _ in range(3)]
        try:
            a, b, c = (session.semaphore("pool/db", 2) for session in sessions)
            assert a.acquire(timeout=5) and b.acquire(timeout=5)
            assert c.acquire(timeout=0.3) is False
            assert len(_holders(client, "pool/db/")) == 2
            acquired = threading.Event()

            def wait_for_a_slot() -> None:
                if c.acquire(timeout=30):
                    acquired.set()

            thread = threading.Thread(target=wait_for_a_slot)
            thread.start()
            eventually(lambda: len(_holders(client, "pool/db/")) == 3, what="c queues")
            assert not acquired.is_set()
            a.release()
            thread.join(30)
            assert acquired.is_set() and c.held and b.held
            assert sorted(_holders(client, "pool/db/")) == sorted([str(b.key), str(c.key)])
        finally:
            for session in sessions:
                session.close()


def test_followers_see_every_leader_in_order_and_resign_hands_over(tuco: StartTuco) -> None:
    """An observer sees a, b, c lead in campaign order, then nobody; each resign hands over to the next."""
    server = tuco()
    with Client(server.url) as client, Client(server.url) as watcher:
        seen: list[Leader | None] = []
        observer = watcher.session(ttl=5)  # only for its client
        stream = observer.election("el/main").observe()

        def follow() -> None:
            for leader in stream:
                seen.append(leader)
                if len(seen) == 5:
                    return

        following = threading.Thread(target=follow, daemon=True)
        following.start()
        eventually(lambda: seen == [None], what="the observer's first look")
        sessions = [client.session(ttl=5).open() for _ in range(3)]
        elections = [session.election("el/main") for session in sessions]
        tokens: dict[int, int] = {}
        threads = []

        def campaign(n: int) -> None:
            tokens[n] = elections[n].campaign(f"v{n}")

        for n in range(3):
            threads.append(threading.Thread(target=campaign, args=(n,)))
            threads[-1].start()
            eventually(functools.partial(_queued, client, "el/main/", n + 1), what="queued in order")
        eventually(lambda: 0 in tokens, what="the first leads")
        assert elections[0].is_leader() and not elections[1].is_leader()
        assert elections[0].proclaim("v0-bis") > tokens[0]
        for n in range(3):
            eventually(functools.partial(tokens.__contains__, n), what=f"leader {n}")
            assert elections[n].is_leader()
            elections[n].resign()
        for thread in threads:
            thread.join(10)
        following.join(10)
        values = [(leader.value, leader.revision) if leader else None for leader in seen]
        assert values == [None, (b"v0", tokens[0]), (b"v0-bis", tokens[0]), (b"v1", tokens[1]), (b"v2", tokens[2])]
        assert tokens[0] < tokens[1] < tokens[2]
        assert elections[0].leader() is None
        for session in sessions:
            session.close()


def test_resign_hands_over_within_one_round_trip(tuco: StartTuco, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the leader resigns, the waiting campaigner sends exactly one request (the queue's listing) to lead."""
    monkeypatch.setattr(lock_module, "POLL_SECONDS", 120.0)  # no timed-out poll in the middle of the count
    server = tuco()
    sent: list[tuple[float, str, str]] = []

    def record(request: httpx.Request) -> None:
        sent.append((time.monotonic(), request.method, request.url.path))

    follower_client = Client(server.url)
    follower_client._http.event_hooks["request"].append(record)
    with (
        Client(server.url) as client,
        client.session(ttl=60) as leader_session,
        follower_client,
        follower_client.session(ttl=60) as follower_session,
    ):
        leader = leader_session.election("el/fast")
        leader.campaign("L")
        follower = follower_session.election("el/fast")
        won: list[int] = []
        thread = threading.Thread(target=lambda: won.append(follower.campaign("F")))
        thread.start()
        eventually(lambda: sent and sent[-1][1] == "GET" and "/v1/key/el" in sent[-1][2], what="the long poll")
        time.sleep(0.2)
        resigned_at = time.monotonic()
        leader.resign()
        thread.join(30)
        assert won and follower.is_leader()
        after = [(method, path) for at, method, path in sent if at >= resigned_at]
        assert after == [("GET", "/v1/keys")]


def test_counters_add_atomically_from_many_threads(tuco: StartTuco) -> None:
    """Four threads add 25 times each: the counter ends at 100 and every value 1..100 was returned once."""
    server = tuco()
    results: list[int] = []
    guard = threading.Lock()

    def add() -> None:
        with Client(server.url) as client:
            counter = client.counter("stats/hits")
            for _ in range(25):
                value = counter.increment()
                with guard:
                    results.append(value)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with Client(server.url) as client:
        assert client.counter("stats/hits").get() == 100
        assert sorted(results) == list(range(1, 101))
        assert client.counter("stats/hits").add(-10) == 90
        assert client.get("stats/hits").value == b"90"
        with pytest.raises(NoSuchKeyError):
            client.get("stats/none")
        assert client.counter("stats/none").get() == 0
