"""The in-memory state: the map that readers are served from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tuco.core.events import Event, EventType
from tuco.errors import NoSuchKeyError

__all__ = ["Store"]


class Store:
    """A ``key -> value`` map that changes only by applying logged events in order.

    Every mutation goes through :meth:`apply`, which remembers the last sequence
    applied and skips anything at or below it, so an event delivered twice (a
    follower catching up after a reconnect) is never applied twice. The store is
    used from one event loop thread; each method is a single dict operation.
    """

    __slots__ = ("_data", "last_sequence")

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self.last_sequence = 0

    def get(self, key: str) -> bytes:
        """Return the value of ``key``; raise :class:`NoSuchKeyError` if absent."""
        try:
            return self._data[key]
        except KeyError:
            raise NoSuchKeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Iterate over a snapshot of the current pairs."""
        return iter(list(self._data.items()))

    def apply(self, event: Event) -> bool:
        """Apply ``event`` if it is newer than the last one applied; return whether it was."""
        if event.sequence <= self.last_sequence:
            return False
        if event.type is EventType.PUT:
            self._data[event.key] = event.value
        else:
            self._data.pop(event.key, None)
        self.last_sequence = event.sequence
        return True

    def apply_batch(self, events: Iterable[Event]) -> None:
        """Apply many events in order: the replay loop, kept tight because start-up time depends on it."""
        data = self._data
        last = self.last_sequence
        put = EventType.PUT
        for sequence, type, key, value in events:
            if sequence <= last:
                continue
            if type is put:
                data[key] = value
            else:
                data.pop(key, None)
            last = sequence
        self.last_sequence = last

    def snapshot(self) -> dict[str, bytes]:
        """A copy of the whole state, for tests and compaction."""
        return dict(self._data)
