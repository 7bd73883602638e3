"""Whose turn it is: the one rule behind locks, semaphores and elections, without I/O.

Each contender creates a key of its own under the name's prefix, create-only and on
its session's lease, so its key's create revision is its place in the queue and its
fencing token. The ``limit`` oldest keys hold; every other contender waits for the
deletion of the one key ``limit`` places ahead of it (never for "any change", so a
release wakes one waiter, not the herd), then reads the queue again. A listing older
than our own key (read from a replica that has not applied it yet) decides nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import NamedTuple

from tuco.client._calls import Item
from tuco.errors import InvalidRequestError

__all__ = ["Leader", "Turn", "contender_key", "decide", "leader_of", "queue_prefix"]


class Turn(NamedTuple):
    """``state``: ``held`` (ours), ``wait`` (for ``wait_for`` to go), ``gone`` (our key ended) or ``behind``."""

    state: str
    wait_for: str | None = None


class Leader(NamedTuple):
    """An election's leader: its key, its value, the revision it won at (its fencing token) and of its value."""

    key: str
    value: bytes
    revision: int
    mod_revision: int


def queue_prefix(name: str) -> str:
    """The prefix under which the contenders for ``name`` put their keys."""
    if not isinstance(name, str) or not name or name.endswith("/"):
        raise InvalidRequestError("a lock or election name is a non-empty string not ending in '/'")
    return name + "/"


def contender_key(name: str, lease: int) -> str:
    """A key no other contender can have: the session's lease and a random part (two locks of one session differ)."""
    return f"{queue_prefix(name)}{lease:016x}-{secrets.token_hex(4)}"


def _ordered(items: Iterable[Item]) -> list[Item]:
    return sorted(items, key=lambda item: (item.create_revision, item.key))


def decide(revision: int, items: Iterable[Item], key: str, created: int, limit: int) -> Turn:
    """Our turn, from a listing at ``revision`` of the queue, our ``key`` created at ``created``."""
    if revision < created:
        return Turn("behind")
    ordered = _ordered(items)
    place = next((n for n, item in enumerate(ordered) if item.key == key), None)
    if place is None or ordered[place].create_revision != created:
        return Turn("gone")
    if place < limit:
        return Turn("held")
    return Turn("wait", ordered[place - limit].key)


def leader_of(items: Iterable[Item]) -> Leader | None:
    """The oldest contender, or None when nobody campaigns."""
    ordered = _ordered(items)
    if not ordered:
        return None
    first = ordered[0]
    return Leader(first.key, first.value or b"", first.create_revision, first.mod_revision)
