"""What a watcher sees: which changes match it, and each change as the event a client receives.

Pure: the service moves a watcher's cursor over :class:`~tuco.core.history.History`
(or over events a shared log reads back), and this module decides which
of those changes are the watcher's and what each one says. A change's
``create_revision`` and ``version`` are derived from the entry it replaced,
exactly as :meth:`~tuco.core.store.Store.apply` derives them while serving,
so a watch shows the revisions a read at that moment showed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from tuco.core.events import Event, EventType
from tuco.core.history import Change, flatten
from tuco.core.origin import Origin
from tuco.core.txn import decode_writes

__all__ = ["Selector", "WatchEvent", "events_from_changes", "events_from_log"]

_PUT = 1
_DELETE = 2


class Selector(NamedTuple):
    """The keys a watcher follows: exactly ``key``, or every key starting with ``prefix`` ("" is all)."""

    prefix: str = ""
    key: str | None = None

    def matches(self, key: str) -> bool:
        return key == self.key if self.key is not None else key.startswith(self.prefix)


class WatchEvent(NamedTuple):
    """One change as a watcher receives it.

    ``create_revision`` and ``version`` are None for a PUT read back from a
    shared log's table of events (older than the memory retains): the table
    keeps neither, and deriving them would scan the key's whole history.
    A DELETE carries neither (the key has no entry after it).
    """

    revision: int
    type: str  # "put" or "delete"
    key: str
    value: bytes
    create_revision: int | None
    version: int | None
    origin: Origin | None = None
    """Who made the change, when and why; None where the log did not record it."""


def events_from_changes(changes: Iterable[Change], selector: Selector) -> list[WatchEvent]:
    """The changes (History's tuples) that ``selector`` matches, as events, in order.

    Types other than PUT and DELETE (bookkeeping records) are no key changes and are skipped.
    """
    prefix = selector.prefix
    only = selector.key
    found: list[WatchEvent] = []
    for change in flatten(changes):  # a transaction's writes: together, at its revision
        key = change[2]
        if (key != only) if only is not None else not key.startswith(prefix):
            continue
        code = change[1]
        revision = change[0]
        if code == _PUT:
            previous = change[4]
            if previous is None:
                found.append(WatchEvent(revision, "put", key, change[3], revision, 1, change[5]))
            else:
                found.append(WatchEvent(revision, "put", key, change[3], previous[1], previous[3] + 1, change[5]))
        elif code == _DELETE:
            found.append(WatchEvent(revision, "delete", key, b"", None, None, change[5]))
    return found


def events_from_log(events: Iterable[Event], selector: Selector) -> list[WatchEvent]:
    """Logged events that ``selector`` matches, as watch events (without the revisions the log does not keep)."""
    found: list[WatchEvent] = []
    for event in _expand(events):
        key = event.key
        if not selector.matches(key):
            continue
        if event.type is EventType.PUT:
            created = event.create_revision or None
            version = event.version or None
            found.append(WatchEvent(event.sequence, "put", key, event.value, created, version, event.origin))
        elif event.type is EventType.DELETE:
            found.append(WatchEvent(event.sequence, "delete", key, b"", None, None, event.origin))
    return found


def _expand(events: Iterable[Event]) -> Iterator[Event]:
    """The events with each transaction's replaced by its writes' events."""
    for event in events:
        if event.type is EventType.TXN:
            origin = event.origin
            for write in decode_writes(event.sequence, event.value):
                yield write if origin is None else write._replace(origin=origin)
        else:
            yield event
