"""The transaction log's errors; :mod:`tuco.errors` re-exports them."""

from __future__ import annotations

from tuco._errors_base import TucoError

__all__ = [
    "LogClosedError",
    "LogCorruptError",
    "LogError",
    "LogFailedError",
    "LogFormatError",
    "LogReadOnlyError",
    "LogUnavailableError",
]


class LogError(TucoError):
    """Something about the transaction log."""

    __module__ = "tuco.errors"

    code = "log_error"
    status = 503


class LogClosedError(LogError):
    """The log was closed by us (shutdown); it takes no more writes."""

    __module__ = "tuco.errors"

    code = "log_closed"
    status = 503


class LogFailedError(LogError):
    """The log broke under us; nothing after the failure was acknowledged."""

    __module__ = "tuco.errors"

    code = "log_failed"
    status = 503


class LogUnavailableError(LogFailedError):
    """The database could not be reached; these writes were not acknowledged, later ones may be.

    Unlike its parent it does not stop the log: writes resume once the database is
    back. A write that gets it may or may not have been stored (the connection can
    break during COMMIT); it was never acknowledged.
    """

    __module__ = "tuco.errors"

    code = "log_unavailable"
    status = 503


class LogReadOnlyError(LogError):
    """The database answers, but the role tuco logs in as may not write: ``missing`` names the privileges.

    Nothing was written. Not a fault that waiting cures: an operator grants the
    privileges (``missing``: "INSERT on tuco_events"...), and writes resume without a restart.
    """

    __module__ = "tuco.errors"

    code = "log_read_only"
    status = 503

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


class LogCorruptError(LogError):
    """A damaged record is followed by valid ones: refusing to guess."""

    __module__ = "tuco.errors"

    code = "log_corrupt"
    status = 503


class LogFormatError(LogError):
    """The file is not a tuco log, or is in a format version this build cannot read."""

    __module__ = "tuco.errors"

    code = "log_format"
    status = 503
