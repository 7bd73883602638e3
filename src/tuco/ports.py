"""The interfaces between the core and its adapters.

The book's ``TransactionLogger`` in Python form. The HTTP layer and the
runtime depend on these protocols only; the file log, the PostgreSQL log and
the fakes in :mod:`tuco.testing` implement them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from tuco.core.distribution import Distribution
from tuco.core.events import Entry, Event, EventType, Expiry, Precondition
from tuco.core.origin import Origin
from tuco.core.snapshot import Item as SnapshotItem
from tuco.core.store import Page
from tuco.core.txn import Txn, TxnOutcome
from tuco.errors import LogError

__all__ = [
    "CommitSink",
    "EventHistory",
    "LogStatistics",
    "LogStatus",
    "Read",
    "StateReader",
    "StateSnapshots",
    "TransactionLog",
]


class CommitSink(Protocol):
    """Where a log hands its committed events, and what it asks to decide preconditions.

    The service passes one (the store, and whoever watches it), so every
    committed event, this replica's or another's, reaches it once, in order.
    """

    def apply(self, event: Event) -> object:
        """Called for every committed event, in sequence order."""
        ...

    def mod_revision(self, key: str) -> int:
        """The key's mod_revision in what was applied so far (0: absent).

        One-writer logs decide preconditions with it; shared logs decide them
        where the history is (inside the database transaction) and never call it.
        """
        ...

    def key_expiry(self, key: str) -> int | None:
        """When ``key`` expires in what was applied (Unix ms; 0: its lease is gone), None without a deadline.

        Like :meth:`mod_revision`, for one-writer logs deciding expired-only deletes.
        """
        ...

    def lease(self, id: int) -> tuple[int, int] | None:
        """The applied lease's ``(ttl, deadline)``, None if there is none: for one-writer logs."""
        ...

    def record(self, key: str) -> tuple[bytes, int, int, int] | None:
        """The applied key's ``(value, create_revision, mod_revision, version)``, expired or not (compares)."""
        ...

    def keys_under(self, prefix: str) -> Iterator[str]:
        """The applied keys under ``prefix``, in order: what a transaction's range delete and listing find."""
        ...


class LogStatistics(NamedTuple):
    """What a log has counted since it opened, for ``/metrics``: batch sizes and commit and sync times."""

    batch_sizes: Distribution
    """Writes per committed batch."""
    commit_seconds: Distribution
    """From a batch handed to the backend to its commit (write and sync, or the database transaction)."""
    sync_seconds: Distribution | None
    """Each ``fdatasync``/``fsync`` of the log file; None for a log that syncs no file."""
    compactions: int
    """Rewrites of the log that finished."""


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

    async def run(self, sink: CommitSink) -> None:
        """Start taking writes; committed events are handed to ``sink.apply`` in order."""
        ...

    def write_put(
        self, key: str, value: bytes, precondition: Precondition | None = None, origin: Origin | None = None
    ) -> Awaitable[Event]:
        """Durably record that ``key`` now holds ``value``; await the result for the event.

        ``origin`` (who and why; the log sets its moment) is recorded with the
        event by every log (the file, memory and PostgreSQL logs).

        With a ``precondition``, the write happens only if it holds, decided in
        log order and atomically with the write; otherwise the result raises
        :class:`~tuco.errors.PreconditionFailedError` and nothing is recorded.
        Not ``async def``: implementations return a plain future when they can,
        so a write costs no coroutine or task on the request path.
        """
        ...

    def write_delete(
        self, key: str, precondition: Precondition | None = None, origin: Origin | None = None
    ) -> Awaitable[Event]:
        """Durably record that ``key`` was deleted (if ``precondition`` holds); await the result for the event."""
        ...

    def write_expiring(
        self,
        type: EventType,
        key: str,
        value: bytes = b"",
        precondition: Precondition | None = None,
        expiry: Expiry | None = None,
        origin: Origin | None = None,
    ) -> Awaitable[Event]:
        """Record a write with a deadline or a lease, an expired-only DELETE, or a lease record; await the event.

        The log decides the deadline with its clock (:meth:`now_ms`): a PUT with
        ``expiry.ttl`` gets ``deadline = now + ttl``; a LEASE_GRANT's id is its
        own sequence. A PUT with a lease, a keepalive or a revoke of a lease
        that does not exist (or has expired; a revoke may name an expired one)
        raises :class:`~tuco.errors.LeaseNotFoundError`; an ``expired`` DELETE
        or revoke whose deadline has not passed raises
        :class:`~tuco.errors.PreconditionFailedError`. Decided in log order.
        """
        ...

    def write_txn(self, txn: Txn, origin: Origin | None = None) -> Awaitable[TxnOutcome]:
        """Decide and record a transaction, all of its writes at one revision; await the result for its outcome.

        Its compares are decided in log order, atomically with its writes, as
        preconditions are. The awaitable raises :class:`~tuco.errors.LeaseNotFoundError`
        (nothing written) for a put on a lease that does not exist.
        """
        ...

    def now_ms(self) -> int:
        """The clock this log decides expiry by, in Unix milliseconds (PostgreSQL: the database's, as estimated)."""
        ...

    async def catch_up(self) -> None:
        """Make every event committed anywhere visible locally (read-after-write across replicas)."""
        ...

    def describe(self) -> Mapping[str, object]:
        """A small JSON-able status for ``/readyz`` (backend, last sequence, lag...)."""
        ...

    def statistics(self) -> LogStatistics:
        """The counts behind the log's metrics (read when ``/metrics`` is scraped)."""
        ...

    async def aclose(self) -> None:
        """Commit what is pending, then release the file or connections."""
        ...


# -- watching: an optional capability ------------------------------------------


@runtime_checkable
class EventHistory(Protocol):
    """A log that can read back its committed events: watchers resume from there once memory dropped them.

    Optional: the PostgreSQL log keeps every event (``tuco_events``); the file
    log does not offer it, so a watch older than the memory's history gets
    ``410 history_compacted`` there.
    """

    async def events_after(self, revision: int, upto: int, limit: int) -> Sequence[Event]:
        """Up to ``limit`` committed events with ``revision < sequence <= upto``, in order.

        ``create_revision`` and ``version`` are 0 (not recorded per event).
        Raises :class:`~tuco.errors.LogError` if the log cannot be read now.
        """
        ...


# -- reading the state where it is kept: read-through replicas and functions ----


@runtime_checkable
class StateSnapshots(Protocol):
    """A log that can read its whole current state at one revision itself: how a replica without a full copy snapshots.

    Optional: the PostgreSQL log reads it in one ``REPEATABLE READ READ ONLY`` transaction on a
    connection of its own, so it never blocks writers.
    """

    def snapshot_state(self, now: int) -> AsyncGenerator[tuple[int, Sequence[SnapshotItem]]]:
        """The revision, then the state's records in batches (leases and tokens first), each with that revision.

        Tokens expired at ``now`` are left out, as a compaction leaves them. Raises
        :class:`~tuco.errors.LogError` if the state cannot be read.
        """
        ...


class Read(NamedTuple):
    """One key as the state holds it: ``entry`` (None: absent or expired), ``expires_at`` (0: never), ``revision``.

    ``revision`` is the head of the snapshot the read saw.
    """

    entry: Entry | None
    expires_at: int
    revision: int


class StateReader(Protocol):
    """Reads of the current state where a shared log keeps it (PostgreSQL's ``tuco_state``), not from memory.

    Each raises :class:`~tuco.errors.LogError` when the state cannot be read now.
    """

    async def open(self) -> None: ...

    async def read(self, key: str) -> Read:
        """The key now, with the head of the same snapshot."""
        ...

    async def head(self) -> int:
        """The last committed revision."""
        ...

    async def page(self, prefix: str, *, after: str | None, limit: int, revision: int | None) -> Page:
        """A page of the live keys under ``prefix``; raises HistoryCompactedError for a revision it cannot show."""
        ...

    async def changed_since(self, key: str, revision: int) -> bool:
        """Whether ``key`` changed at ``revision`` or later (True when it cannot tell cheaply)."""
        ...

    async def aclose(self) -> None: ...
