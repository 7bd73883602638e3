"""A listing's page: the store's keys in order, merged with what changed since an older revision.

The loop behind :meth:`Store.page <tuco.core.store.Store.page>`, over the store's
maps as arguments: a pure function of what it is handed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from tuco.core.events import Entry

__all__ = ["Item", "Page", "collect_page"]


class Item(NamedTuple):
    """One key of a listing, with its entry at the listing's revision."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    expires_at: int = 0
    """Unix milliseconds when the key expires; 0 when it has no deadline (or none is known at that revision)."""


class Page(NamedTuple):
    """A page of a listing: its items at ``revision``, and the last key if more may follow."""

    revision: int
    items: list[Item]
    last_key: str | None


def collect_page(
    keys: Iterator[str],
    prefix: str,
    after: str | None,
    limit: int,
    revision: int,
    changed: dict[str, Entry | None],
    data: dict[str, tuple[bytes, int, int, int]],
    expiring: dict[str, tuple[bytes, int, int, int]],
    expires_at: Callable[[str], int],
    now: int,
) -> Page:
    """Up to ``limit`` of ``keys`` (current, ascending) starting with ``prefix``, as they were at ``revision``.

    ``changed`` holds each key changed since ``revision`` with its entry then (None: absent);
    keys with a deadline at or before ``now`` are left out.
    """
    if changed:
        keys = _merge_sorted(keys, sorted(k for k in changed if k.startswith(prefix) and (after is None or k > after)))
    items: list[Item] = []
    for key in keys:
        if not key.startswith(prefix):
            break
        if key in changed:
            then = changed[key]
            if then is None:
                continue
            items.append(Item(key, *then))
        elif (entry := data.get(key)) is not None:
            items.append(Item(key, *entry))
        else:
            entry = expiring[key]
            deadline = expires_at(key)
            if deadline <= now:  # expired: never listed, even before its DELETE is logged
                continue
            items.append(Item(key, *entry, deadline))
        if len(items) >= limit:
            return Page(revision, items, key)
    return Page(revision, items, None)


def _merge_sorted(first: Iterator[str], second: list[str]) -> Iterator[str]:
    """Merge two ascending streams of distinct keys, yielding each key once."""
    others = iter(second)
    other = next(others, None)
    for key in first:
        while other is not None and other < key:
            yield other
            other = next(others, None)
        if other == key:
            other = next(others, None)
        yield key
    if other is not None:
        yield other
        yield from others
