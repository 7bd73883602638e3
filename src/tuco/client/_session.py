"""Sessions: a lease the client keeps alive for as long as the session lives.

Every coordination helper (lock, semaphore, election) hangs its keys on a session's
lease, so a holder that dies (or stops renewing) loses what it held once the lease
ends, and never before. What "alive" means is decided here without I/O
(:class:`SessionState`) by this machine's monotonic clock: a renewal sent at ``t``
proves the lease lives until at least ``t + ttl``, so a process paused past that
point (SIGSTOP, a long GC pause) learns on waking that it may have lost, before it
acts, even if no renewal has told it yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType

from tuco._tasks import stop_task
from tuco.client._async_coord import AsyncElection, AsyncLock, AsyncSemaphore
from tuco.client._calls import Lease
from tuco.client._election import Election
from tuco.client._errors import OutcomeUnknownError, SessionLostError
from tuco.client._lock import Lock
from tuco.client._protocols import AsyncKeys, Keys
from tuco.client._semaphore import Semaphore
from tuco.errors import InvalidRequestError, LeaseNotFoundError, TucoError

__all__ = ["AsyncSession", "Session", "SessionState"]

_GRANT_TRIES = 3  # a grant whose answer was lost leaves an orphan lease that simply expires: safe to ask again


class SessionState:
    """What a session knows: its lease, until when it is surely alive, whether it is lost."""

    def __init__(self, lease: Lease, granted_at: float) -> None:
        if lease.ttl <= 0:
            raise InvalidRequestError("a session's ttl is a positive number of seconds")
        self.lease = lease
        self.valid_until = granted_at + lease.ttl
        self.lost = False
        self.error: BaseException | None = None

    def next_wait(self, now: float) -> float:
        """Seconds until the next renewal: a third of the ttl, sooner once renewals have been failing."""
        regular = self.lease.ttl / 3.0
        if self.error is not None:
            regular = min(regular, max(self.lease.ttl / 10.0, 0.05))
        return max(min(regular, self.valid_until - now - 0.01), 0.05)

    def renewed(self, lease: Lease, sent_at: float) -> None:
        """A keepalive sent at ``sent_at`` succeeded: the lease lives at least ttl after the send."""
        if not self.lost:
            self.lease = lease
            self.valid_until = max(self.valid_until, sent_at + lease.ttl)
            self.error = None

    def failed(self, error: BaseException, now: float) -> bool:
        """A keepalive failed; True once the session is lost (the lease ended, or its sure end passed)."""
        self.error = error
        if isinstance(error, LeaseNotFoundError) or now >= self.valid_until:
            self.lost = True
        return self.lost

    def alive(self, now: float) -> bool:
        """Whether the lease surely still lives at ``now``; once false, false for good."""
        if now >= self.valid_until:
            self.lost = True
        return not self.lost


class _Lease:
    """What a session of either kind says of its lease: its id, whether it surely lives, for how long.

    Each kind keeps its lease alive its own way (a thread, a task) and knows how it is lost (``_lose``).
    """

    _state: SessionState | None
    _USE = "use it in a with block, or call open()"

    @property
    def lease_id(self) -> int:
        """The session's lease (keys put with ``lease=session.lease_id`` end with it)."""
        return self._opened().lease.id

    def _opened(self) -> SessionState:
        if self._state is None:
            raise InvalidRequestError(f"the session is not open ({self._USE})")
        return self._state

    def _lose(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        """Whether the lease surely lives now (by this machine's clock); checks before acting on a lock."""
        state = self._opened()
        if not state.alive(time.monotonic()):
            self._lose()
            return False
        return True

    def check(self) -> None:
        """Raise :class:`~tuco.client.SessionLostError` unless the session is alive."""
        if not self.alive():
            state = self._opened()
            raise SessionLostError(f"session lease {state.lease.id} ended: {state.error or 'not renewed in time'}")

    def remaining(self) -> float:
        """Seconds the lease surely lives from now without another renewal."""
        return max(self._opened().valid_until - time.monotonic(), 0.0)


class Session(_Lease):
    """A lease kept alive from a background thread while the session is open.

    ``lost`` is set (and ``on_lost(session)`` called, once, from the renewing thread or
    whichever call notices first) when the lease ended or could not be renewed before
    its sure end: every lock, semaphore slot or leadership of the session is gone.
    Closing revokes the lease, which releases them all at once.
    """

    def __init__(self, client: Keys, ttl: float = 10.0, *, on_lost: Callable[[Session], object] | None = None) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0.3 <= ttl <= 86_400:
            raise InvalidRequestError("a session's ttl is from 0.3 to 86400 seconds")
        self.client = client
        self.ttl = float(ttl)
        self.on_lost = on_lost
        self.lost = threading.Event()
        self._state: SessionState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._notify = threading.Lock()

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> Session:
        """Grant the lease and start renewing it."""
        if self._state is not None:
            return self
        for attempt in range(_GRANT_TRIES):
            started = time.monotonic()
            try:
                lease = self.client.grant(self.ttl)
            except OutcomeUnknownError:
                if attempt + 1 == _GRANT_TRIES:
                    raise
                continue
            self._state = SessionState(lease, started)
            break
        self._thread = threading.Thread(target=self._keep, name=f"tuco-session-{self.lease_id}", daemon=True)
        self._thread.start()
        return self

    def _lose(self) -> None:
        with self._notify:
            if self.lost.is_set():
                return
            self.lost.set()
        self._stop.set()
        if self.on_lost is not None:
            with contextlib.suppress(Exception):
                self.on_lost(self)

    def _keep(self) -> None:
        state = self._opened()
        while not self._stop.wait(state.next_wait(time.monotonic())):
            sent = time.monotonic()
            try:
                lease = self.client.keepalive(state.lease.id)
            except TucoError as exc:
                if state.failed(exc, time.monotonic()):
                    self._lose()
                    return
            else:
                state.renewed(lease, sent)
                if not state.alive(time.monotonic()):
                    self._lose()
                    return

    def close(self) -> None:
        """Stop renewing and revoke the lease: every key of the session goes at once."""
        if self._state is None:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if not self.lost.is_set():
            with contextlib.suppress(TucoError):
                self.client.revoke(self._state.lease.id)
            self._state.lost = True
            self.lost.set()

    def lock(self, name: str, *, timeout: float | None = None, value: bytes | str = b"") -> Lock:
        """A :class:`~tuco.client.Lock` named ``name`` held by this session."""
        return Lock(self, name, timeout=timeout, value=value)

    def semaphore(self, name: str, limit: int, *, timeout: float | None = None) -> Semaphore:
        """A :class:`~tuco.client.Semaphore` of ``limit`` holders named ``name``."""
        return Semaphore(self, name, limit, timeout=timeout)

    def election(self, name: str) -> Election:
        """An :class:`~tuco.client.Election` named ``name`` in which this session campaigns."""
        return Election(self, name)


class AsyncSession(_Lease):
    """:class:`Session` for asyncio: the lease is renewed by a task; ``lost`` is an :class:`asyncio.Event`."""

    _USE = "use it in an async with block, or await open()"

    def __init__(
        self, client: AsyncKeys, ttl: float = 10.0, *, on_lost: Callable[[AsyncSession], object] | None = None
    ) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0.3 <= ttl <= 86_400:
            raise InvalidRequestError("a session's ttl is from 0.3 to 86400 seconds")
        self.client = client
        self.ttl = float(ttl)
        self.on_lost = on_lost
        self.lost = asyncio.Event()
        self._state: SessionState | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncSession:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def open(self) -> AsyncSession:
        """Grant the lease and start renewing it."""
        if self._state is not None:
            return self
        for attempt in range(_GRANT_TRIES):
            started = time.monotonic()
            try:
                lease = await self.client.grant(self.ttl)
            except OutcomeUnknownError:
                if attempt + 1 == _GRANT_TRIES:
                    raise
                continue
            self._state = SessionState(lease, started)
            break
        self._task = asyncio.create_task(self._keep(), name=f"tuco-session-{self.lease_id}")
        return self

    def _lose(self) -> None:
        if self.lost.is_set():
            return
        self.lost.set()
        if self.on_lost is not None:
            with contextlib.suppress(Exception):
                self.on_lost(self)

    async def _keep(self) -> None:
        state = self._opened()
        while True:
            await asyncio.sleep(state.next_wait(time.monotonic()))
            sent = time.monotonic()
            try:
                lease = await self.client.keepalive(state.lease.id)
            except TucoError as exc:
                if state.failed(exc, time.monotonic()):
                    self._lose()
                    return
            else:
                state.renewed(lease, sent)
                if not state.alive(time.monotonic()):
                    self._lose()
                    return

    async def aclose(self) -> None:
        """Stop renewing and revoke the lease: every key of the session goes at once."""
        if self._state is None:
            return
        if self._task is not None:
            await stop_task(self._task)
        if not self.lost.is_set():
            with contextlib.suppress(TucoError):
                await self.client.revoke(self._state.lease.id)
            self._state.lost = True
            self.lost.set()

    def lock(self, name: str, *, timeout: float | None = None, value: bytes | str = b"") -> AsyncLock:
        """An :class:`~tuco.client.AsyncLock` named ``name`` held by this session."""
        return AsyncLock(self, name, timeout=timeout, value=value)

    def semaphore(self, name: str, limit: int, *, timeout: float | None = None) -> AsyncSemaphore:
        """An :class:`~tuco.client.AsyncSemaphore` of ``limit`` holders."""
        return AsyncSemaphore(self, name, limit, timeout=timeout)

    def election(self, name: str) -> AsyncElection:
        """An :class:`~tuco.client.AsyncElection` named ``name``."""
        return AsyncElection(self, name)
