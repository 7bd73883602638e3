"""Transaction log adapters: the append-only file (default) and PostgreSQL."""

from tuco.log.batching import GroupCommit
from tuco.log.file import FileTransactionLog, LogReader, ScanReport, SyncMode, repair_log

__all__ = ["FileTransactionLog", "GroupCommit", "LogReader", "ScanReport", "SyncMode", "repair_log"]
