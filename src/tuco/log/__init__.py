"""Transaction log adapters: the append-only file (default) and PostgreSQL.

The adapters load on first use (module ``__getattr__``), so importing ``tuco.log``
or one of its private modules loads neither adapter nor its dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuco.log.batching import GroupCommit
    from tuco.log.file import FileTransactionLog, LogReader, ScanReport, SyncMode, repair_log

__all__ = ["FileTransactionLog", "GroupCommit", "LogReader", "ScanReport", "SyncMode", "repair_log"]

_HOME = {
    "FileTransactionLog": "tuco.log.file",
    "GroupCommit": "tuco.log.batching",
    "LogReader": "tuco.log.file",
    "ScanReport": "tuco.log.file",
    "SyncMode": "tuco.log.file",
    "repair_log": "tuco.log.file",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
