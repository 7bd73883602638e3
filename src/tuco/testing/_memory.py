"""In-memory fakes: a complete transaction log kept in a list, and a sink that records what it was handed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence

from tuco.core.events import Event
from tuco.core.store import Store
from tuco.core.txn import TxnOutcome
from tuco.errors import LogError, LogFailedError
from tuco.log.batching import (
    ExpiryState,
    GroupCommit,
    Mutation,
    Outcome,
    sequence_batch,
    wall_clock_ms,
)
from tuco.log.group_writes import WritesThroughGroupCommit
from tuco.ports import CommitSink

__all__ = ["MemoryLog", "RecordingSink"]


class RecordingSink:
    """A :class:`~tuco.ports.CommitSink` that applies to a store and keeps every event it was handed."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store if store is not None else Store()
        self.events: list[Event] = []

    def apply(self, event: Event) -> object:
        self.events.append(event)
        return self.store.apply(event)

    def mod_revision(self, key: str) -> int:
        return self.store.mod_revision(key)

    def key_expiry(self, key: str) -> int | None:
        """When the key expires in what was applied (Unix ms), None without a deadline."""
        return self.store.key_expiry(key)

    def lease(self, id: int) -> tuple[int, int] | None:
        """The applied lease's ``(ttl, deadline)``, None if there is none."""
        return self.store.lease(id)

    def record(self, key: str) -> tuple[bytes, int, int, int] | None:
        """The applied key's entry tuple, expired or not (None: absent)."""
        return self.store.record(key)

    def keys_under(self, prefix: str) -> Iterator[str]:
        """The applied keys under ``prefix``, in order."""
        return self.store.keys_under(prefix)


class MemoryLog(WritesThroughGroupCommit):
    """A transaction log kept in a list; same group-commit path as the real ones.

    The list is kept, not copied: a second ``MemoryLog(log.events)`` after
    ``aclose`` is the same log reopened.
    """

    def __init__(self, events: list[Event] | None = None, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.events: list[Event] = events if events is not None else []
        self._commits = GroupCommit(self._commit, txns_together=True)
        self._mod_revision: Callable[[str], int] = lambda key: 0  # set by run()
        self._expiry: ExpiryState | None = None
        self.fail_next_commit: LogFailedError | None = None
        self.clock = clock
        """Unix milliseconds expiry is decided by: tests hand in a clock they move."""

    @property
    def failure(self) -> LogError | None:
        return self._commits.failure

    async def open(self) -> None:
        """Nothing to acquire: the list is already here."""

    async def read_events(self) -> AsyncIterator[Sequence[Event]]:
        yield list(self.events)

    async def run(self, sink: CommitSink) -> None:
        self._mod_revision = sink.mod_revision
        self._expiry = sink
        self._commits.start(sink.apply)

    def now_ms(self) -> int:
        return self.clock()

    async def catch_up(self) -> None:
        """Nothing to catch up with: one process, one list."""

    def describe(self) -> Mapping[str, object]:
        return {"backend": "memory", "last_sequence": len(self.events)}

    async def _commit(self, batch: Sequence[Mutation]) -> Sequence[Outcome]:
        if self.fail_next_commit is not None:
            raise self.fail_next_commit
        outcomes = sequence_batch(batch, len(self.events) + 1, self._mod_revision, self._expiry, self.clock)
        for outcome in outcomes:
            if isinstance(outcome, TxnOutcome):
                if outcome.event is not None:
                    self.events.append(outcome.event)
            elif isinstance(outcome, Event):
                self.events.append(outcome)
        return outcomes

    async def aclose(self) -> None:
        await self._commits.aclose()
