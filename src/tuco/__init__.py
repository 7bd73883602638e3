"""tuco: a dependable key-value store service."""

from tuco.core.events import Event, EventType
from tuco.core.store import Store
from tuco.errors import (
    ConfigurationError,
    HistoryCompactedError,
    InvalidBodyError,
    InvalidKeyError,
    InvalidPageTokenError,
    InvalidParameterError,
    InvalidPreconditionError,
    InvalidRequestError,
    KeyTooLongError,
    LeaseLimitError,
    LeaseNotFoundError,
    LogClosedError,
    LogCorruptError,
    LogError,
    LogFailedError,
    LogFormatError,
    LogUnavailableError,
    NoSuchKeyError,
    PreconditionFailedError,
    StreamingUnsupportedError,
    TooManyWatchersError,
    TucoError,
    ValueTooLargeError,
)
from tuco.ports import TransactionLog

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "Event",
    "EventType",
    "HistoryCompactedError",
    "InvalidBodyError",
    "InvalidKeyError",
    "InvalidPageTokenError",
    "InvalidParameterError",
    "InvalidPreconditionError",
    "InvalidRequestError",
    "KeyTooLongError",
    "LeaseLimitError",
    "LeaseNotFoundError",
    "LogClosedError",
    "LogCorruptError",
    "LogError",
    "LogFailedError",
    "LogFormatError",
    "LogUnavailableError",
    "NoSuchKeyError",
    "PreconditionFailedError",
    "Store",
    "StreamingUnsupportedError",
    "TooManyWatchersError",
    "TransactionLog",
    "TucoError",
    "ValueTooLargeError",
    "__version__",
]
