"""Lock, semaphore and election for asyncio: the same queue (``_queue``) as the blocking ones, awaited."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING

from tuco.client._calls import Item
from tuco.client._election import LeaderTracker
from tuco.client._errors import LockTimeoutError, OutcomeUnknownError, SessionLostError
from tuco.client._lock import check_timeout, poll_for
from tuco.client._queue import Leader, contender_key, decide, leader_of, queue_prefix
from tuco.client._semaphore import check_limit
from tuco.errors import (
    InvalidRequestError,
    LeaseNotFoundError,
    NoSuchKeyError,
    PreconditionFailedError,
    RevisionAheadError,
    TucoError,
)

if TYPE_CHECKING:
    from tuco.client._protocols import AsyncKeys, AsyncSessionLike

__all__ = ["AsyncElection", "AsyncLock", "AsyncSemaphore", "observe"]

_TRIES = 3


async def _queue(client: AsyncKeys, prefix: str) -> tuple[int, list[Item]]:
    revision = 0
    items: list[Item] = []
    async for page in client.pages(prefix, page_size=1000):
        revision = revision or page.revision
        items.extend(page.items)
    return revision, items


class AsyncLock:
    """:class:`~tuco.client.Lock` for asyncio: ``async with session.lock(name) as lock:``, ``lock.token``."""

    limit = 1

    def __init__(
        self, session: AsyncSessionLike, name: str, *, timeout: float | None = None, value: bytes | str = b""
    ) -> None:
        check_timeout(timeout)
        self.session = session
        self.name = name
        self.prefix = queue_prefix(name)
        self.timeout = timeout
        self.value = value.encode() if isinstance(value, str) else bytes(value)
        self.key: str | None = None
        self.token: int | None = None
        self.revision: int | None = None

    @property
    def lost(self) -> asyncio.Event:
        """The session's ``lost`` event."""
        return self.session.lost

    @property
    def held(self) -> bool:
        """Whether we hold it now: acquired, and the session surely alive."""
        return self.token is not None and self.session.alive()

    def check(self) -> int:
        """The fencing token, or :class:`~tuco.client.SessionLostError`."""
        if self.token is None:
            raise SessionLostError(f"lock {self.name!r} is not held")
        self.session.check()
        return self.token

    async def __aenter__(self) -> AsyncLock:
        if not await self.acquire(self.timeout):
            raise LockTimeoutError(f"{self.name!r} not acquired within {self.timeout:g}s")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.release()

    async def acquire(self, timeout: float | None = None) -> bool:
        """As :meth:`tuco.client.Lock.acquire`."""
        check_timeout(timeout)
        if self.token is not None:
            raise InvalidRequestError(f"{self.name!r} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.session.check()
        self.key = contender_key(self.name, self.session.lease_id)
        created: int | None = None
        client = self.session.client
        try:
            created = await self._create(self.key)
            while True:
                self.session.check()
                revision, items = await _queue(client, self.prefix)
                turn = decide(revision, items, self.key, created, self.limit)
                if turn.state == "held":
                    self.token = self.revision = created
                    return True
                if turn.state == "gone":
                    raise SessionLostError(f"the key of {self.name!r} ended while waiting: the session's lease ended")
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    await self._withdraw(created)
                    return False
                if turn.state == "behind":
                    await asyncio.sleep(0.05)
                    continue
                assert turn.wait_for is not None
                with contextlib.suppress(RevisionAheadError):
                    await client.wait(turn.wait_for, revision + 1, timeout=poll_for(self.session.ttl, deadline, now))
        except BaseException:
            if self.token is None and created is not None:
                with contextlib.suppress(TucoError):
                    await self._withdraw(created)
            raise

    async def _create(self, key: str) -> int:
        client = self.session.client
        for attempt in range(_TRIES):
            try:
                return (await client.put(key, self.value, if_absent=True, lease=self.session.lease_id)).revision
            except LeaseNotFoundError as exc:
                raise SessionLostError(f"the session's lease ended: {exc}") from exc
            except PreconditionFailedError:
                return (await client.get(key, consistent=True)).mod_revision
            except OutcomeUnknownError:
                try:
                    return (await client.get(key, consistent=True)).mod_revision
                except NoSuchKeyError:
                    if attempt + 1 == _TRIES:
                        raise
        raise AssertionError("unreachable")

    async def _withdraw(self, created: int) -> None:
        """Delete our key until it is gone or the session is (see :meth:`tuco.client.Lock._withdraw`)."""
        assert self.key is not None
        while True:
            try:
                await self.session.client.delete(self.key, if_revision=created)
                break
            except (PreconditionFailedError, NoSuchKeyError):
                break
            except TucoError:
                if not self.session.alive():
                    break
                await asyncio.sleep(0.2)
        self.key = self.token = self.revision = None

    async def release(self) -> None:
        """Delete our key if it is still at our revision (never a newer holder's)."""
        if self.key is None or self.revision is None:
            return
        await self._withdraw(self.revision)


class AsyncSemaphore(AsyncLock):
    """:class:`~tuco.client.Semaphore` for asyncio."""

    def __init__(self, session: AsyncSessionLike, name: str, limit: int, *, timeout: float | None = None) -> None:
        super().__init__(session, name, timeout=timeout)
        self.limit = check_limit(limit)


async def observe(client: AsyncKeys, name: str) -> AsyncIterator[Leader | None]:
    """The leader now, then each change of leader in order, forever."""
    prefix = queue_prefix(name)
    revision, items = await _queue(client, prefix)
    tracker = LeaderTracker(items)
    yield tracker.leader
    async for event in client.watch(prefix, start_revision=revision + 1, reconnect_for=float("inf")):
        if tracker.feed(event):
            yield tracker.leader


class AsyncElection:
    """:class:`~tuco.client.Election` for asyncio."""

    def __init__(self, session: AsyncSessionLike, name: str) -> None:
        self.session = session
        self.name = name
        self._lock: AsyncLock | None = None

    @property
    def token(self) -> int | None:
        """Our fencing token while we lead."""
        return self._lock.token if self._lock is not None else None

    async def campaign(self, value: bytes | str, *, timeout: float | None = None) -> int:
        """Wait until we lead, announcing ``value``; our fencing token."""
        if self._lock is not None and self._lock.token is not None:
            raise SessionLostError(f"already campaigned in {self.name!r}: resign first")
        lock = AsyncLock(self.session, self.name, value=value)
        if not await lock.acquire(timeout):
            raise LockTimeoutError(f"not the leader of {self.name!r} within {timeout:g}s")
        self._lock = lock
        assert lock.token is not None
        return lock.token

    def is_leader(self) -> bool:
        """Whether we lead now (won, and the session surely alive)."""
        return self._lock is not None and self._lock.held

    async def proclaim(self, value: bytes | str) -> int:
        """Change the leader's value; its new revision."""
        lock = self._lock
        if lock is None or lock.key is None or lock.revision is None or not lock.held:
            raise SessionLostError(f"not the leader of {self.name!r}")
        try:
            written = await self.session.client.put(lock.key, value, if_revision=lock.revision)
        except PreconditionFailedError as exc:
            raise SessionLostError(f"no longer the leader of {self.name!r}") from exc
        lock.revision = written.revision
        return written.revision

    async def resign(self) -> None:
        """Stop leading (or campaigning)."""
        if self._lock is not None:
            await self._lock.release()
            self._lock = None

    async def leader(self) -> Leader | None:
        """The current leader, or None."""
        return leader_of((await _queue(self.session.client, queue_prefix(self.name)))[1])

    def observe(self) -> AsyncIterator[Leader | None]:
        """The leader now, then each change of leader in order."""
        return observe(self.session.client, self.name)
