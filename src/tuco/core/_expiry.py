"""What the expirer takes from the store: the keys and leases due, and watching again what could not be deleted.

Functions over the store's maps (see :meth:`Store.due <tuco.core.store.Store.due>`
and :meth:`Store.retry_later <tuco.core.store.Store.retry_later>`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tuco.core.leases import Due, Leases

__all__ = ["due_at", "watch_again"]


def due_at(
    leases: Leases,
    expiring: dict[str, tuple[bytes, int, int, int]],
    expires_at: Callable[[str], int],
    now: int,
    limit: int | None,
) -> Due:
    """The keys (with their mod_revision) and leases expired at ``now``, each handed out once."""
    due = Due()
    keys: dict[str, int] = {}
    ended: dict[int, None] = {}  # a lease may come up more than once (a retry): handed out once, in order
    for key, id, deadline in leases.pop_due(now, limit):
        if key is not None:
            entry = expiring.get(key)
            if entry is not None and deadline <= now and expires_at(key) == deadline:
                keys[key] = entry[2]
            continue
        lease = leases.get(id)
        if lease is not None and lease.deadline == deadline <= now and id not in ended:
            keys.update((key, expiring[key][2]) for key in sorted(lease.keys) if key in expiring)
            ended[id] = None
    due.keys = list(keys.items())
    due.leases = list(ended)
    return due


def watch_again(
    leases: Leases,
    keys: Iterable[str],
    lease_ids: Iterable[int],
    when: int,
    expiring: dict[str, tuple[bytes, int, int, int]],
    key_lease: dict[str, int],
    expires_at: Callable[[str], int],
) -> None:
    """Look again at ``when`` at the keys and leases that are still there."""
    again = set(lease_ids)
    for key in keys:
        if key not in expiring:
            continue
        lease = leases.get(key_lease.get(key, 0))
        if lease is not None:
            again.add(lease.id)  # a leased key comes back with its lease
        else:
            leases.watch_key(key, expires_at(key), when)
    for id in again:
        lease = leases.get(id)
        if lease is not None:
            leases.watch_lease(id, lease.deadline, when)
