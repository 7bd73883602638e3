"""The TransactionLog contract (tuco.testing.check_transaction_log), passed by the memory and file logs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tuco.core.events import Event
from tuco.log.file import FileTransactionLog, compact_log
from tuco.ports import TransactionLog
from tuco.testing import MemoryLog, check_transaction_log


def test_memory_log_passes_the_contract() -> None:
    """MemoryLog, reopened over the same list, passes every check of the contract suite."""
    storage: list[Event] = []
    asyncio.run(check_transaction_log(lambda: MemoryLog(storage)))


@pytest.mark.parametrize("compact", [False, True], ids=["plain", "compacted-at-each-reopen"])
def test_file_log_passes_the_contract(tmp_path: Path, compact: bool) -> None:
    """FileTransactionLog, reopened on the same file (compacted offline before each reopen, or not), passes it."""
    path = tmp_path / "tuco.log"
    opened = 0

    def make_log() -> TransactionLog:
        nonlocal opened
        opened += 1
        if compact and path.exists():
            compact_log(path)
        return FileTransactionLog(path, compact_min_bytes=0)

    asyncio.run(check_transaction_log(make_log))
    assert opened == 3
