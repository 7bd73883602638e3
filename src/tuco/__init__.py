"""tuco: a dependable key-value store service.

The store, its events and the log's port are loaded on first use (PEP 562), so that
``import tuco.client`` (the slim ``pip install tuco``) loads no server module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tuco.errors import (
    BadRequestError,
    CancelledError,
    ConfigurationError,
    ExpectationFailedError,
    ForbiddenError,
    HeadersTooLargeError,
    HistoryCompactedError,
    InvalidBodyError,
    InvalidEventError,
    InvalidKeyError,
    InvalidPageTokenError,
    InvalidParameterError,
    InvalidPreconditionError,
    InvalidRequestError,
    InvalidTxnError,
    KeyTooLongError,
    LeaseLimitError,
    LeaseNotFoundError,
    LogClosedError,
    LogCorruptError,
    LogError,
    LogFailedError,
    LogFormatError,
    LogReadOnlyError,
    LogUnavailableError,
    MethodNotAllowedError,
    NoSuchKeyError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolError,
    RequestTimeoutError,
    RevisionAheadError,
    ServerBusyError,
    ServerUnreachableError,
    ShuttingDownError,
    SnapshotError,
    SnapshotFormatError,
    StartingError,
    StoreFullError,
    StreamingUnsupportedError,
    TokenLimitError,
    TokenNotFoundError,
    TooManyConnectionsError,
    TooManyWatchersError,
    TucoError,
    TxnBytesLimitError,
    TxnOpsLimitError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedTransferCodingError,
    UriTooLongError,
    ValueTooLargeError,
    WatcherShareError,
)

if TYPE_CHECKING:
    from tuco.core.events import Event, EventType
    from tuco.core.store import Store
    from tuco.ports import TransactionLog

_LAZY = {
    "Event": "tuco.core.events",
    "EventType": "tuco.core.events",
    "Store": "tuco.core.store",
    "TransactionLog": "tuco.ports",
}

__version__ = "0.1.0"

__all__ = [
    "BadRequestError",
    "CancelledError",
    "ConfigurationError",
    "Event",
    "EventType",
    "ExpectationFailedError",
    "ForbiddenError",
    "HeadersTooLargeError",
    "HistoryCompactedError",
    "InvalidBodyError",
    "InvalidEventError",
    "InvalidKeyError",
    "InvalidPageTokenError",
    "InvalidParameterError",
    "InvalidPreconditionError",
    "InvalidRequestError",
    "InvalidTxnError",
    "KeyTooLongError",
    "LeaseLimitError",
    "LeaseNotFoundError",
    "LogClosedError",
    "LogCorruptError",
    "LogError",
    "LogFailedError",
    "LogFormatError",
    "LogReadOnlyError",
    "LogUnavailableError",
    "MethodNotAllowedError",
    "NoSuchKeyError",
    "NotFoundError",
    "PreconditionFailedError",
    "ProtocolError",
    "RequestTimeoutError",
    "RevisionAheadError",
    "ServerBusyError",
    "ServerUnreachableError",
    "ShuttingDownError",
    "SnapshotError",
    "SnapshotFormatError",
    "StartingError",
    "Store",
    "StoreFullError",
    "StreamingUnsupportedError",
    "TokenLimitError",
    "TokenNotFoundError",
    "TooManyConnectionsError",
    "TooManyWatchersError",
    "TransactionLog",
    "TucoError",
    "TxnBytesLimitError",
    "TxnOpsLimitError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedTransferCodingError",
    "UriTooLongError",
    "ValueTooLargeError",
    "WatcherShareError",
    "__version__",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tuco' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
