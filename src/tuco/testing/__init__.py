"""Fakes for testing code above the log, and the contract every log passes, shipped with the package.

``MemoryLog`` is a complete in-memory :class:`~tuco.ports.TransactionLog`;
``RecordingLogFile`` is a real log file that records the order of its writes,
syncs and truncations; ``FailingDisk`` opens real log files that fail the way
disks do (a partial write then ``ENOSPC``, a sync that fails with ``EIO``), to
show what the service does when its disk breaks. :func:`check_transaction_log`
is the contract suite (like trio's ``check_two_way_stream``): the memory, file
and PostgreSQL logs all pass it, and a new backend proves itself the same way.

Like trio's ``testing``, the package is private modules behind this one:
``_memory`` (the memory fakes), ``_disk`` (the disk fakes, which need the file
log) and ``_contract`` (the suite). The disk fakes load on first use (module
``__getattr__``), so the memory fakes and the contract suite load no log adapter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tuco.testing._contract import check_transaction_log
from tuco.testing._memory import MemoryLog, RecordingSink

if TYPE_CHECKING:
    from tuco.testing._disk import FailingDisk, FailingLogFile, LogFileCall, RecordingLogFile

__all__ = [
    "FailingDisk",
    "FailingLogFile",
    "LogFileCall",
    "MemoryLog",
    "RecordingLogFile",
    "RecordingSink",
    "check_transaction_log",
]

_DISK = frozenset({"FailingDisk", "FailingLogFile", "LogFileCall", "RecordingLogFile"})


def __getattr__(name: str) -> object:
    if name not in _DISK:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("tuco.testing._disk"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
