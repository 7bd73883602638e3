"""tuco.client against real servers: both clients, both front ends, both backends, restarts and refusals."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess
from tuco.client import AsyncClient, Backoff, Client, Entry, Item, WatchEvent, Written
from tuco.errors import (
    InvalidRequestError,
    LeaseNotFoundError,
    LogUnavailableError,
    NoSuchKeyError,
    PreconditionFailedError,
    ServerUnreachableError,
    ValueTooLargeError,
)

StartTuco = Callable[..., TucoProcess]


def test_sync_client_speaks_the_whole_key_api(frontend: tuple[str, str]) -> None:
    """get/put/delete, compare-and-swap, listing pages, a long poll and errors, on every front end and backend."""
    _, url = frontend
    with Client(url) as client:
        created = client.put("app/a", b"\xff\x00bytes")
        entry = client.get("app/a")
        assert entry == Entry("app/a", b"\xff\x00bytes", created.revision, entry.revision)
        assert entry.revision >= created.revision
        swapped = client.put("app/a", "two", if_revision=created.revision)
        assert swapped.revision > created.revision
        with pytest.raises(PreconditionFailedError) as stale:
            client.put("app/a", "three", if_revision=created.revision)
        assert stale.value.current == swapped.revision
        with pytest.raises(PreconditionFailedError) as exists:
            client.put("app/a", "x", if_absent=True)
        assert exists.value.current == swapped.revision
        for n in range(5):
            client.put(f"app/k{n}", str(n))
        client.put("other", "o")
        pages = list(client.pages("app/", page_size=2))
        assert [len(page.items) for page in pages] == [2, 2, 2]
        assert len({page.revision for page in pages}) == 1
        keys = [item.key for item in client.scan("app/", page_size=4)]
        assert keys == ["app/a", "app/k0", "app/k1", "app/k2", "app/k3", "app/k4"]
        first = next(iter(client.scan("app/k0", keys_only=True)))
        assert isinstance(first, Item) and (first.key, first.value, first.version) == ("app/k0", None, 1)
        changed, polled = client.wait("app/a", swapped.revision, timeout=5)
        assert changed is True and polled is not None and polled.value == b"two"
        changed, polled = client.wait("app/a", swapped.revision + 1, timeout=0.2)
        assert changed is False and polled is not None and polled.mod_revision == swapped.revision
        deleted = client.delete("app/a")
        assert deleted.revision > swapped.revision
        with pytest.raises(NoSuchKeyError):
            client.get("app/a")
        with pytest.raises(PreconditionFailedError) as absent:
            client.delete("app/a", if_exists=True)
        assert absent.value.current == 0
        with pytest.raises(ValueTooLargeError):
            client.put("big", b"x" * (2 * 1024 * 1024))
        assert client.health() is True
        assert client.readiness()["ready"] is True


def test_async_client_speaks_the_whole_key_api(frontend: tuple[str, str]) -> None:
    """The asyncio client: the same calls, results and errors as the blocking one."""
    _, url = frontend

    async def session() -> None:
        async with AsyncClient(url) as client:
            created = await client.put("k", "v1")
            assert (await client.get("k")).value == b"v1"
            assert isinstance(await client.put("k", "v2", if_revision=created.revision), Written)
            with pytest.raises(PreconditionFailedError):
                await client.put("k", "v3", if_revision=created.revision)
            await asyncio.gather(*(client.put(f"p/{n:02}", str(n)) for n in range(12)))
            assert [item.key async for item in client.scan("p/", page_size=5)] == [f"p/{n:02}" for n in range(12)]
            await client.delete("k")
            with pytest.raises(NoSuchKeyError):
                await client.get("k")
            lease = await client.grant(30)
            await client.put("held", "x", lease=lease.id)
            assert (await client.lease(lease.id)).keys == ("held",)
            revoked = await client.revoke(lease.id)
            assert revoked.deleted_keys == 1
            with pytest.raises(LeaseNotFoundError):
                await client.keepalive(lease.id)
            with pytest.raises(NoSuchKeyError):
                await client.get("held")

    asyncio.run(session())


def test_keep_alive_holds_a_lease_past_its_ttl_and_lets_it_end_afterwards(tuco: StartTuco) -> None:
    """A 1 s lease kept alive for 2.5 s keeps its key; once the block ends the key is deleted at the lease's end."""
    server = tuco()
    with Client(server.url) as client:
        lease = client.grant(1)
        client.put("lock", "me", lease=lease.id)
        with client.keep_alive(lease) as kept:
            time.sleep(2.5)
            assert client.get("lock").value == b"me"
            assert kept.lost is False and kept.lease.expires_at > lease.expires_at
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                client.get("lock")
            except NoSuchKeyError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the key outlived its lease")


def test_keep_alive_reports_a_lease_revoked_elsewhere_as_lost(tuco: StartTuco) -> None:
    """The async keeper sees 404 no_such_lease after another client revoked the lease, and stops."""
    server = tuco()

    async def session() -> None:
        async with AsyncClient(server.url) as client:
            lease = await client.grant(0.6)
            async with client.keep_alive(lease) as kept:
                await client.revoke(lease.id)
                await asyncio.sleep(0.6)
                assert kept.lost is True and isinstance(kept.error, LeaseNotFoundError)

    asyncio.run(session())


def _watch_into(url: str, prefix: str, seen: list[WatchEvent], stop: threading.Event) -> threading.Thread:
    def follow() -> None:
        with Client(url, backoff=Backoff(base=0.05, cap=0.2)) as client:
            for event in client.watch(prefix, start_revision=1, reconnect_for=60):
                seen.append(event)
                if stop.is_set():
                    return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.postgres
def test_watch_survives_a_restart_of_its_replica_without_losing_or_repeating_an_event(
    tuco: StartTuco, pg_dsn: str, tmp_path: Path
) -> None:
    """PostgreSQL: writes go on through replica B while the watched replica A restarts; A's watcher sees each once."""
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn}
    port = free_port()
    watched = tuco(data_dir=tmp_path / "a", TUCO_PORT=str(port), **env)
    writer = tuco(data_dir=tmp_path / "b", **env)
    seen: list[WatchEvent] = []
    stop = threading.Event()
    follower = _watch_into(watched.url, "w/", seen, stop)
    written: list[int] = []
    with Client(writer.url) as client:
        for n in range(40):
            written.append(client.put(f"w/{n % 7}", str(n)).revision)
        _wait_for(lambda: len(seen) >= 20, "the first events")
        assert watched.terminate() == 0
        for n in range(40, 80):
            written.append(client.put(f"w/{n % 7}", str(n)).revision)
        watched.start()
        for n in range(80, 120):
            written.append(client.put(f"w/{n % 7}", str(n)).revision)
        _wait_for(lambda: len(seen) >= len(written), "every event", timeout=60)
        stop.set()
        client.put("w/last", "x")
    follower.join(10)
    assert [event.revision for event in seen[: len(written)]] == written
    assert [event.value for event in seen[: len(written)]] == [str(n).encode() for n in range(120)]


def test_async_watch_resumes_after_a_file_server_restart(tuco: StartTuco) -> None:
    """File log: one async watch, caught up before a restart, reconnects by itself and sees each later event once."""
    port = free_port()
    server = tuco(TUCO_PORT=str(port))

    async def session() -> list[tuple[int, bytes | None]]:
        got: list[tuple[int, bytes | None]] = []
        async with AsyncClient(server.url, backoff=Backoff(base=0.05, cap=0.2)) as client:

            async def follow() -> None:
                async for event in client.watch(key="k", start_revision=1, reconnect_for=30):
                    got.append((event.revision, event.value))

            follower = asyncio.create_task(follow())
            for n in range(3):
                await client.put("k", str(n))
            while len(got) < 3:
                await asyncio.sleep(0.02)
            assert await asyncio.to_thread(server.terminate) == 0
            await asyncio.to_thread(server.start)
            for n in range(3, 5):
                await client.put("k", str(n))
            async with asyncio.timeout(30):
                while len(got) < 5:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # nothing more (no repeat) arrives
            follower.cancel()
        return got

    got = asyncio.run(session())
    assert [value for _, value in got] == [b"0", b"1", b"2", b"3", b"4"]
    assert [revision for revision, _ in got] == sorted({revision for revision, _ in got})


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 ``log_unavailable`` to the first ``refusals`` requests, then 201: a database coming back."""

    refusals = 0
    seen: list[str]

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).seen.append(self.headers.get("If-None-Match") or "-")
        self._answer(201)

    def do_DELETE(self) -> None:
        type(self).seen.append(f"DELETE {self.headers.get('If-Match') or '-'}")
        self._answer(200)

    def _answer(self, status: int) -> None:
        if len(type(self).seen) <= type(self).refusals:
            body = b'{"error": "log_unavailable", "message": "m"}'
            self.send_response(503)
        else:
            body = b""
            self.send_response(status)
            self.send_header("ETag", '"7"')
            self.send_header("X-Tuco-Revision", "7")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[type[_Flaky]]:
    handler = type("Handler", (_Flaky,), {"seen": [], "refusals": 2})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def test_plain_writes_retry_on_503_and_conditional_writes_do_not(flaky: type[_Flaky]) -> None:
    """Two 503 log_unavailable then 201: a plain PUT succeeds on the third try; a create-only PUT raises at once."""
    url = flaky.url  # type: ignore[attr-defined]
    with Client(url, backoff=Backoff(attempts=5, base=0.01, cap=0.02)) as client:
        assert client.put("k", "v") == Written(7)
        assert flaky.seen == ["-", "-", "-"]
        flaky.seen.clear()
        with pytest.raises(LogUnavailableError) as refused:
            client.put("k", "v", if_absent=True)
        assert (refused.value.code, refused.value.status) == ("log_unavailable", 503)
        assert flaky.seen == ["*"]


def test_plain_deletes_retry_on_503_and_conditional_deletes_do_not(flaky: type[_Flaky]) -> None:
    """Two 503 log_unavailable then 200: a plain DELETE succeeds on the third try; one with If-Match raises at
    once (its first attempt may have deleted the key: a retry would answer a false 412)."""
    url = flaky.url  # type: ignore[attr-defined]
    with Client(url, backoff=Backoff(attempts=5, base=0.01, cap=0.02)) as client:
        assert client.delete("k") == Written(7)
        assert flaky.seen == ["DELETE -", "DELETE -", "DELETE -"]
        for condition, sent in (({"if_revision": 3}, '"3"'), ({"if_exists": True}, "*")):
            flaky.seen.clear()
            with pytest.raises(LogUnavailableError):
                client.delete("k", **condition)
            assert flaky.seen == [f"DELETE {sent}"]


def test_unreachable_server_and_bad_arguments_are_errors_of_the_tree() -> None:
    """A closed port is ServerUnreachableError after the retries; a bad key is refused before anything is sent."""
    with Client(f"http://127.0.0.1:{free_port()}", backoff=Backoff(attempts=2, base=0.01)) as client:
        with pytest.raises(ServerUnreachableError):
            client.get("k")
        with pytest.raises(InvalidRequestError):
            client.get("")
