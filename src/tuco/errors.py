"""The exceptions tuco raises, all rooted at :class:`TucoError`.

::

    TucoError
    ├── NoSuchKeyError            the key is not in the store (the one callers test for)
    ├── InvalidRequestError       a client's mistake; never a server fault
    │   ├── InvalidKeyError       empty or undecodable key
    │   │   └── KeyTooLongError   key over the limit
    │   └── ValueTooLargeError    body over the value limit
    ├── ConfigurationError        settings that cannot work; reported at start-up
    └── LogError                  the transaction log
        ├── LogClosedError        we closed it; no more writes are taken
        ├── LogFailedError        it broke under us (disk, database); writes stop
        │   └── LogUnavailableError   the database is out of reach: this batch failed, later ones may not
        ├── LogCorruptError       a damaged record followed by valid ones
        └── LogFormatError        not a tuco log, or a format we cannot read

Every error carries a stable machine-readable ``code``; the HTTP layer maps
classes to statuses in one table and puts the code in the JSON error body.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "InvalidKeyError",
    "InvalidRequestError",
    "KeyTooLongError",
    "LogClosedError",
    "LogCorruptError",
    "LogError",
    "LogFailedError",
    "LogFormatError",
    "LogUnavailableError",
    "NoSuchKeyError",
    "TucoError",
    "ValueTooLargeError",
]


class TucoError(Exception):
    """Root of every error tuco raises on purpose."""

    code = "internal_error"


class NoSuchKeyError(TucoError, KeyError):
    """The key is not in the store."""

    code = "no_such_key"

    def __str__(self) -> str:
        return f"no such key: {self.args[0]!r}" if self.args else "no such key"


class InvalidRequestError(TucoError):
    """A request the client must change before it can succeed."""

    code = "invalid_request"


class InvalidKeyError(InvalidRequestError):
    """The key is empty, not valid UTF-8 after percent-decoding, or over the limit."""

    code = "invalid_key"


class KeyTooLongError(InvalidKeyError):
    """The key is over the configured limit."""

    code = "key_too_long"


class ValueTooLargeError(InvalidRequestError):
    """The value is over the configured limit."""

    code = "value_too_large"


class ConfigurationError(TucoError):
    """Settings that cannot work; reported as one line at start-up."""

    code = "invalid_configuration"


class LogError(TucoError):
    """Something about the transaction log."""

    code = "log_error"


class LogClosedError(LogError):
    """The log was closed by us (shutdown); it takes no more writes."""

    code = "log_closed"


class LogFailedError(LogError):
    """The log broke under us; nothing after the failure was acknowledged."""

    code = "log_failed"


class LogUnavailableError(LogFailedError):
    """The database could not be reached; these writes were not acknowledged, later ones may be.

    Unlike its parent it does not stop the log: writes resume once the database is
    back. A write that gets it may or may not have been stored (the connection can
    break during COMMIT); it was never acknowledged.
    """

    code = "log_unavailable"


class LogCorruptError(LogError):
    """A damaged record is followed by valid ones: refusing to guess."""

    code = "log_corrupt"


class LogFormatError(LogError):
    """The file is not a tuco log, or is in a format version this build cannot read."""

    code = "log_format"
