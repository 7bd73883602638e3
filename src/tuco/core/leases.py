"""Leases and deadlines: the pure bookkeeping behind expiring keys.

A key expires at its own deadline (``PUT ?ttl=``) or at its lease's
(``PUT ?lease=``), which keepalives move. The store keeps deadlines apart
from the per-key entries, so a key without one costs nothing more. The
expirer finds what is due through one heap of ``(when, ...)`` items that are
never removed in place: an item is checked against the current state when it
comes up, and dropped if the key or lease moved on (lazy deletion keeps every
write O(log n) and keepalives free of searches).

A lease belongs to the principal that granted it (its ``owner``: a token id or
a certificate identity, recorded with the grant in the log), so ownership is
the same on every replica and after every restart. Only the owner and admins
may use it; to anyone else it does not exist. A lease granted with
authentication off (or by a build from before owners) has none: once
authentication is on, only admins may use it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from itertools import count

__all__ = ["Due", "Lease", "Leases", "may_use"]


class Lease:
    """One lease: its time to live, its deadline (Unix ms), the keys attached to it and who granted it ("": nobody)."""

    __slots__ = ("deadline", "id", "keys", "owner", "ttl")

    def __init__(self, id: int, ttl: int, deadline: int, owner: str = "") -> None:
        self.id = id
        self.ttl = ttl
        self.deadline = deadline
        self.keys: set[str] = set()
        self.owner = owner


def may_use(lease: Lease, principal: str, admin: bool) -> bool:
    """Whether ``principal`` may see and use ``lease``: its owner may, and any admin."""
    return admin or (lease.owner != "" and lease.owner == principal)


class Leases:
    """The live leases by id, and the heap of deadlines the expirer walks."""

    __slots__ = ("_by_id", "_heap", "_order", "_owned")

    def __init__(self) -> None:
        self._by_id: dict[int, Lease] = {}
        self._owned: dict[str, int] = {}  # live leases per owner: what a principal's share is checked against
        # (when, tie, key or None, lease id, the deadline the item stands for)
        self._heap: list[tuple[int, int, str | None, int, int]] = []
        self._order = count()

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Lease]:
        return iter(list(self._by_id.values()))

    def get(self, id: int) -> Lease | None:
        return self._by_id.get(id)

    def owned_by(self, owner: str) -> int:
        """How many live leases ``owner`` holds."""
        return self._owned.get(owner, 0)

    def grant(self, id: int, ttl: int, deadline: int, owner: str = "") -> Lease:
        lease = self._by_id.get(id)
        if lease is None:
            lease = self._by_id[id] = Lease(id, ttl, deadline, owner)
            if owner:
                self._owned[owner] = self._owned.get(owner, 0) + 1
        else:
            lease.ttl, lease.deadline = ttl, deadline
        self.watch_lease(id, deadline)
        return lease

    def keepalive(self, id: int, deadline: int) -> None:
        lease = self._by_id.get(id)
        if lease is not None:
            lease.deadline = deadline
            self.watch_lease(id, deadline)

    def revoke(self, id: int) -> Lease | None:
        lease = self._by_id.pop(id, None)
        if lease is not None and lease.owner:
            left = self._owned[lease.owner] - 1
            if left:
                self._owned[lease.owner] = left
            else:
                del self._owned[lease.owner]
        return lease

    def watch_key(self, key: str, deadline: int, when: int | None = None) -> None:
        """Have the expirer look at ``key`` at ``when`` (default: its deadline)."""
        heapq.heappush(self._heap, (deadline if when is None else when, next(self._order), key, 0, deadline))

    def watch_lease(self, id: int, deadline: int, when: int | None = None) -> None:
        heapq.heappush(self._heap, (deadline if when is None else when, next(self._order), None, id, deadline))

    def next_due(self) -> int | None:
        """When the earliest item comes up (Unix ms), or None when nothing waits."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int, limit: int | None = None) -> list[tuple[str | None, int, int]]:
        """The items due at ``now`` (at most ``limit``): ``(key, 0, deadline)`` or ``(None, lease id, deadline)``."""
        heap = self._heap
        due: list[tuple[str | None, int, int]] = []
        left = len(heap) if limit is None else limit
        while heap and heap[0][0] <= now and left > 0:
            _, _, key, id, deadline = heapq.heappop(heap)
            due.append((key, id, deadline))
            left -= 1
        return due

    def pending(self) -> int:
        """Items in the heap, stale ones included (for tests and metrics)."""
        return len(self._heap)

    def rebuild(self, keys: list[tuple[str, int]]) -> None:
        """Replace the heap by one item per key in ``keys`` (``(key, deadline)``) and per lease.

        Stale items (a key rewritten, a lease kept alive) leave only when they
        come due, so a key rewritten often with a long ttl would grow the heap
        without bound; the store rebuilds it once it is mostly stale.
        """
        order = self._order
        heap: list[tuple[int, int, str | None, int, int]] = [
            (deadline, next(order), key, 0, deadline) for key, deadline in keys
        ]
        heap.extend((lease.deadline, next(order), None, lease.id, lease.deadline) for lease in self._by_id.values())
        heapq.heapify(heap)
        self._heap = heap


class Due:
    """What the expirer must write now: DELETEs of ``keys`` (each at its mod_revision), then revokes of ``leases``."""

    __slots__ = ("keys", "leases")

    def __init__(self) -> None:
        self.keys: list[tuple[str, int]] = []
        self.leases: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.keys or self.leases)
