"""A lock held by a session, with a fencing token: the blocking flavour (see ``_async_coord`` for asyncio).

The token is the revision that created the holder's key; later holders always get
larger ones, so a resource that refuses any token lower than the highest it has seen
refuses the work of a holder that lost the lock without knowing (paused, partitioned).
Release deletes the holder's own key on the condition that it is still at the
holder's revision: it can never delete a newer holder's key.
"""

from __future__ import annotations

import contextlib
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

from tuco.client._calls import Item
from tuco.client._errors import LockTimeoutError, OutcomeUnknownError, SessionLostError
from tuco.client._queue import contender_key, decide, queue_prefix
from tuco.errors import (
    InvalidRequestError,
    LeaseNotFoundError,
    NoSuchKeyError,
    PreconditionFailedError,
    RevisionAheadError,
    TucoError,
)

if TYPE_CHECKING:
    from tuco.client._protocols import SessionLike

__all__ = ["POLL_SECONDS", "Lock"]

POLL_SECONDS = 5.0
"""The longest single wait for a predecessor: the session and the deadline are checked at least this often."""
_BEHIND_PAUSE = 0.05
_RETRY_PAUSE = 0.2
_TRIES = 3


def check_timeout(timeout: float | None) -> None:
    """A timeout is None (wait as long as the session lives) or seconds from 0."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0):
        raise InvalidRequestError("a timeout is a number of seconds from 0, or None")


def poll_for(session_ttl: float, deadline: float | None, now: float) -> float:
    """How long the next wait for a predecessor may last: bounded by the deadline and the session's ttl."""
    bound = min(POLL_SECONDS, max(session_ttl, 0.2))
    if deadline is not None:
        bound = min(bound, deadline - now)
    return max(bound, 0.0)


class Lock:
    """A mutual-exclusion lock named ``name`` (a key prefix), held by ``session``.

    ``with session.lock("locks/backup", timeout=30) as lock:`` acquires (or raises
    :class:`~tuco.client.LockTimeoutError`), and releases on leaving. ``lock.token`` is
    the fencing token; ``lock.held`` is False once the session is lost (check it, or
    pass the token to the resource, before each step); ``lock.lost`` is the session's event.
    """

    limit = 1

    def __init__(
        self, session: SessionLike, name: str, *, timeout: float | None = None, value: bytes | str = b""
    ) -> None:
        check_timeout(timeout)
        self.session = session
        self.name = name
        self.prefix = queue_prefix(name)
        self.timeout = timeout
        self.value = value.encode() if isinstance(value, str) else bytes(value)
        self.key: str | None = None
        self.token: int | None = None
        """The fencing token while held: the revision that created our key."""
        self.revision: int | None = None
        """Our key's latest revision (a proclaimed value moves it; the token stays)."""

    @property
    def lost(self) -> threading.Event:
        """The session's ``lost`` event: set once whatever the session held is gone."""
        return self.session.lost

    @property
    def held(self) -> bool:
        """Whether we hold it now: acquired, and the session surely alive."""
        return self.token is not None and self.session.alive()

    def check(self) -> int:
        """The fencing token, or :class:`~tuco.client.SessionLostError` if the lock is no longer surely ours."""
        if self.token is None:
            raise SessionLostError(f"lock {self.name!r} is not held")
        self.session.check()
        return self.token

    def __enter__(self) -> Lock:
        if not self.acquire(self.timeout):
            raise LockTimeoutError(f"{self.name!r} not acquired within {self.timeout:g}s")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for our turn (at most ``timeout`` seconds; None: as long as the session lives); False at the timeout.

        The session keeps renewing its lease all along, so a wait longer than its ttl is fine.
        """
        check_timeout(timeout)
        if self.token is not None:
            raise InvalidRequestError(f"{self.name!r} is already held by this object")
        deadline = None if timeout is None else time.monotonic() + timeout
        self.session.check()
        self.key = contender_key(self.name, self.session.lease_id)
        created: int | None = None
        try:
            created = self._create(self.key)
            while True:
                self.session.check()
                revision, items = self._queue()
                turn = decide(revision, items, self.key, created, self.limit)
                if turn.state == "held":
                    self.token = self.revision = created
                    return True
                if turn.state == "gone":
                    raise SessionLostError(f"the key of {self.name!r} ended while waiting: the session's lease ended")
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._withdraw(created)
                    return False
                if turn.state == "behind":
                    time.sleep(_BEHIND_PAUSE)
                    continue
                assert turn.wait_for is not None
                try:
                    self.session.client.wait(
                        turn.wait_for, revision + 1, timeout=poll_for(self.session.ttl, deadline, now)
                    )
                except RevisionAheadError:
                    continue
        except BaseException:
            if self.token is None and created is not None:
                with contextlib.suppress(TucoError):
                    self._withdraw(created)
            raise

    def _create(self, key: str) -> int:
        """Put our key create-only on the lease; a lost answer is settled by reading the key (no one else has it)."""
        client = self.session.client
        for attempt in range(_TRIES):
            try:
                return client.put(key, self.value, if_absent=True, lease=self.session.lease_id).revision
            except LeaseNotFoundError as exc:
                raise SessionLostError(f"the session's lease ended: {exc}") from exc
            except PreconditionFailedError:
                return client.get(key, consistent=True).mod_revision  # our own earlier attempt applied
            except OutcomeUnknownError:
                try:
                    return client.get(key, consistent=True).mod_revision
                except NoSuchKeyError:
                    if attempt + 1 == _TRIES:
                        raise
        raise AssertionError("unreachable")

    def _queue(self) -> tuple[int, list[Item]]:
        revision = 0
        items: list[Item] = []
        for page in self.session.client.pages(self.prefix, page_size=1000, keys_only=False):
            revision = revision or page.revision
            items.extend(page.items)
        return revision, items

    def _withdraw(self, created: int) -> None:
        """Delete our key (only at our revision), trying until it is gone or the session is.

        A key left behind while the session lives would stay first in the queue for good
        (the session keeps its lease alive), and every later contender, this session's
        too, would wait behind it. So a failure is tried again (a repeat after a lost
        answer is a harmless 412) until the delete lands or the session is no longer
        surely alive (then the lease ends and takes the key with it).
        """
        assert self.key is not None
        while True:
            try:
                self.session.client.delete(self.key, if_revision=created)
                break
            except (PreconditionFailedError, NoSuchKeyError):
                break
            except TucoError:
                if not self.session.alive():
                    break
                time.sleep(_RETRY_PAUSE)
        self.key = self.token = self.revision = None

    def release(self) -> None:
        """Give the lock up: delete our key if it is still at our revision (never a newer holder's)."""
        if self.key is None or self.revision is None:
            return
        self._withdraw(self.revision)
