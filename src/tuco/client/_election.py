"""A leader election on the lock's queue: the oldest campaigner leads, the others wait in order.

``observe()`` follows the queue with one watch, so a follower sees every change of
leader, in the order they happened (the watch gives every event once, in revision order).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from tuco.client._calls import Item
from tuco.client._errors import LockTimeoutError, SessionLostError
from tuco.client._lock import Lock
from tuco.client._queue import Leader, leader_of, queue_prefix
from tuco.client._watch import WatchEvent
from tuco.errors import PreconditionFailedError

if TYPE_CHECKING:
    from tuco.client._protocols import Keys, SessionLike

__all__ = ["Election", "LeaderTracker", "observe"]


class LeaderTracker:
    """The queue as a watch sees it, event by event; says when the leader changed."""

    def __init__(self, items: list[Item]) -> None:
        self._items = {item.key: item for item in items}
        self.leader = leader_of(self._items.values())

    def feed(self, event: WatchEvent) -> bool:
        """Apply one event; True if the leader (``self.leader``, None: nobody) changed."""
        if event.type == "delete":
            self._items.pop(event.key, None)
        else:
            old = self._items.get(event.key)
            created = event.create_revision or (old.create_revision if old is not None else event.revision)
            self._items[event.key] = Item(event.key, event.value, created, event.revision, event.version or 1)
        leader = leader_of(self._items.values())
        if leader == self.leader:
            return False
        self.leader = leader
        return True


def observe(client: Keys, name: str) -> Iterator[Leader | None]:
    """The leader now, then each new leader (or None when nobody leads) as it changes, forever."""
    prefix = queue_prefix(name)
    items: list[Item] = []
    revision = 0
    for page in client.pages(prefix, page_size=1000):
        revision = revision or page.revision
        items.extend(page.items)
    tracker = LeaderTracker(items)
    yield tracker.leader
    for event in client.watch(prefix, start_revision=revision + 1, reconnect_for=float("inf")):
        if tracker.feed(event):
            yield tracker.leader


class Election:
    """Campaign to lead ``name``; while leading, ``token`` fences what the leader does.

    ``campaign(value)`` returns once we lead (or raises :class:`~tuco.client.LockTimeoutError`);
    ``is_leader()`` is False as soon as the session is not surely alive, so a leader
    paused past its ttl learns it lost before it acts; ``resign()`` hands over to the
    next in line at once (its wait for our key ends with the delete).
    """

    def __init__(self, session: SessionLike, name: str) -> None:
        self.session = session
        self.name = name
        self._lock: Lock | None = None

    @property
    def token(self) -> int | None:
        """Our fencing token while we lead: the revision we won at."""
        return self._lock.token if self._lock is not None else None

    def campaign(self, value: bytes | str, *, timeout: float | None = None) -> int:
        """Wait until we lead, announcing ``value``; our fencing token."""
        if self._lock is not None and self._lock.token is not None:
            raise SessionLostError(f"already campaigned in {self.name!r}: resign first")
        lock = Lock(self.session, self.name, value=value)
        if not lock.acquire(timeout):
            raise LockTimeoutError(f"not the leader of {self.name!r} within {timeout:g}s")
        self._lock = lock
        assert lock.token is not None
        return lock.token

    def is_leader(self) -> bool:
        """Whether we lead now (won, and the session surely alive)."""
        return self._lock is not None and self._lock.held

    def proclaim(self, value: bytes | str) -> int:
        """Change the leader's value without giving up leadership; its new revision."""
        lock = self._lock
        if lock is None or lock.key is None or lock.revision is None or not lock.held:
            raise SessionLostError(f"not the leader of {self.name!r}")
        try:
            written = self.session.client.put(lock.key, value, if_revision=lock.revision)
        except PreconditionFailedError as exc:
            raise SessionLostError(f"no longer the leader of {self.name!r}") from exc
        lock.revision = written.revision
        return written.revision

    def resign(self) -> None:
        """Stop leading (or campaigning): our key goes, the next in line leads."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def leader(self) -> Leader | None:
        """The current leader, or None."""
        items: list[Item] = []
        for page in self.session.client.pages(queue_prefix(self.name), page_size=1000):
            items.extend(page.items)
        return leader_of(items)

    def observe(self) -> Iterator[Leader | None]:
        """The leader now, then each change of leader in order (see :func:`observe`)."""
        return observe(self.session.client, self.name)
