"""The interfaces between the core and its adapters.

The book's ``TransactionLogger`` in Python form. The HTTP layer and the
runtime depend on these protocols only; the file log, the PostgreSQL log and
the fakes in :mod:`tuco.testing` implement them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from tuco.core.events import Event
from tuco.errors import LogError

__all__ = ["ApplyEvent", "LogStatus", "TransactionLog"]

ApplyEvent = Callable[[Event], object]
"""Called for every committed event, in sequence order (normally ``Store.apply``)."""


class LogStatus(Protocol):
    """What readiness and logging need to know about a log."""

    @property
    def failure(self) -> LogError | None:
        """Why the log stopped taking writes, or ``None`` while it is healthy."""
        ...


class TransactionLog(LogStatus, Protocol):
    """An ordered, durable record of every PUT and DELETE.

    Lifecycle: ``open()`` to acquire the log, ``read_events()`` once to rebuild the state, then ``run(apply)``
    to start writing (and, for shared logs, following other writers), then the
    writes, then ``aclose()``. A write returns only once its event is durable
    and has been passed to ``apply``; it raises :class:`~tuco.errors.LogFailedError`
    or :class:`~tuco.errors.LogClosedError` if it was not stored.
    """

    async def open(self) -> None:
        """Acquire the log (lock the file, reach the database) without reading it.

        Raises a :class:`~tuco.errors.LogError` naming the cause, so a process can
        refuse to start before it binds its port. ``read_events`` opens if needed.
        """
        ...

    def read_events(self) -> AsyncIterator[Sequence[Event]]:
        """Yield the logged events in sequence order, in batches, for replay."""
        ...

    async def run(self, apply: ApplyEvent) -> None:
        """Start taking writes; committed events are handed to ``apply`` in order."""
        ...

    def write_put(self, key: str, value: bytes) -> Awaitable[Event]:
        """Durably record that ``key`` now holds ``value``; await the result for the event.

        Not ``async def``: implementations return a plain future when they can,
        so a write costs no coroutine or task on the request path.
        """
        ...

    def write_delete(self, key: str) -> Awaitable[Event]:
        """Durably record that ``key`` was deleted; await the result for the event."""
        ...

    async def catch_up(self) -> None:
        """Make every event committed anywhere visible locally (read-after-write across replicas)."""
        ...

    def describe(self) -> Mapping[str, object]:
        """A small JSON-able status for ``/readyz`` (backend, last sequence, lag...)."""
        ...

    async def aclose(self) -> None:
        """Commit what is pending, then release the file or connections."""
        ...
