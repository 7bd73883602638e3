"""The write methods every log shares: each write queued on the log's one :class:`GroupCommit`.

Apart from :mod:`tuco.log.batching` so that module compiles (tuco._build): the file log's replay is an async
generator, which mypyc does not compile, and an interpreted class cannot inherit from a compiled one.
"""

from __future__ import annotations

from collections.abc import Awaitable

from tuco.core.events import Event, EventType, Expiry, Precondition
from tuco.core.origin import Origin
from tuco.core.txn import Txn, TxnOutcome
from tuco.log.batching import GroupCommit
from tuco.ports import LogStatistics

__all__ = ["WritesThroughGroupCommit"]

_PUT = EventType.PUT
_DELETE = EventType.DELETE


class WritesThroughGroupCommit:
    """The write methods of a :class:`~tuco.ports.TransactionLog` whose every write goes through one GroupCommit.

    The file, PostgreSQL and memory logs differ in how a batch is committed, not in how a write is queued.
    """

    _commits: GroupCommit

    def statistics(self) -> LogStatistics:
        """Batch sizes and commit times; no file syncs and no compactions (the file log adds its own)."""
        commits = self._commits
        return LogStatistics(commits.batch_sizes, commits.commit_seconds, None, 0)

    def write_put(
        self, key: str, value: bytes, precondition: Precondition | None = None, origin: Origin | None = None
    ) -> Awaitable[Event]:
        return self._commits.submit(_PUT, key, value, precondition, origin)

    def write_delete(
        self, key: str, precondition: Precondition | None = None, origin: Origin | None = None
    ) -> Awaitable[Event]:
        return self._commits.submit(_DELETE, key, b"", precondition, origin)

    def write_expiring(
        self,
        type: EventType,
        key: str,
        value: bytes = b"",
        precondition: Precondition | None = None,
        expiry: Expiry | None = None,
        origin: Origin | None = None,
    ) -> Awaitable[Event]:
        return self._commits.submit_expiring(type, key, value, precondition, expiry or Expiry(), origin)

    def write_txn(self, txn: Txn, origin: Origin | None = None) -> Awaitable[TxnOutcome]:
        return self._commits.submit_txn(txn, origin)
