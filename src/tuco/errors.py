"""The exceptions tuco raises, all rooted at :class:`TucoError`.

::

    TucoError
    ├── NoSuchKeyError            the key is not in the store (the one callers test for)
    ├── PreconditionFailedError   a conditional write's condition did not hold; carries the current revision
    ├── HistoryCompactedError     a revision older than the retained history; carries the oldest one
    ├── RevisionAheadError        a resume point the store has not reached (restored from a backup): re-sync
    ├── TooManyWatchersError      the cap on concurrent watch streams is reached
    │   └── WatcherShareError     ...or one principal's share of it
    ├── LeaseNotFoundError        no such lease (never granted, revoked, or expired)
    ├── LeaseLimitError           over the number of leases, or of keys on one lease
    ├── UnauthorizedError         no credential, or one that is malformed, unknown, revoked or expired (401)
    ├── ForbiddenError            a valid credential without the grant the request needs (403)
    ├── TokenNotFoundError        no such token (never created, or revoked)
    ├── TokenLimitError           over the number of live tokens
    ├── StoreFullError            the store is at its bound (bytes or keys): writes that grow it are refused (507)
    ├── SnapshotError             a snapshot cannot be taken or finished now (too many running, too many writes)
    │   └── SnapshotFormatError   a snapshot file that is not one, damaged, truncated or of another version
    ├── InvalidRequestError       a client's mistake; never a server fault
    │   ├── InvalidKeyError       empty or undecodable key
    │   │   └── KeyTooLongError   key over the limit
    │   ├── ValueTooLargeError    body over the value limit
    │   ├── InvalidPreconditionError   If-Match / If-None-Match that tuco cannot read
    │   ├── InvalidPageTokenError      a listing page token that is garbage or for another listing
    │   ├── InvalidParameterError      a query parameter out of range (limit, keys_only)
    │   ├── InvalidBodyError           a gateway event whose body does not decode (base64)
    │   ├── InvalidTxnError            a transaction that cannot be run as written (shape, a key written twice)
    │   ├── TxnOpsLimitError           a transaction with more operations than TUCO_MAX_TXN_OPS (413)
    │   ├── TxnBytesLimitError         a transaction larger than TUCO_MAX_TXN_BYTES (413)
    │   └── InvalidEventError          a gateway event of a shape tuco cannot read (a field of the wrong type)
    ├── StreamingUnsupportedError  a watch stream asked of a front end that cannot stream (an API gateway)
    ├── ProtocolError             what the HTTP layer answers on its own, before or instead of a handler
    │   ├── BadRequestError              a request that does not parse (400)
    │   ├── NotFoundError                no such resource (404)
    │   ├── MethodNotAllowedError        a method the route does not answer; carries ``Allow`` (405)
    │   ├── RequestTimeoutError          the request did not arrive in time (408)
    │   ├── ExpectationFailedError       an ``Expect`` other than 100-continue (417)
    │   ├── UriTooLongError              the request target is too long (414)
    │   ├── HeadersTooLargeError         too many or too large headers (431)
    │   ├── UnsupportedTransferCodingError   a transfer coding other than chunked (501)
    │   ├── StartingError                replaying the log (503)
    │   ├── ShuttingDownError            closing: retry on a new connection (503)
    │   ├── CancelledError               the request was cancelled before it was answered (503)
    │   ├── TooManyConnectionsError      over the connection cap (503, ``Retry-After``)
    │   └── ServerBusyError              over the budget for request bodies (503, ``Retry-After``)
    ├── ConfigurationError        settings that cannot work; reported at start-up
    ├── UnavailableError          (client) the server cannot take the request now: starting, stopping, over a cap
    ├── ServerUnreachableError    (client) no answer: refused, reset or timed out; a write's outcome is unknown
    └── LogError                  the transaction log
        ├── LogClosedError        we closed it; no more writes are taken
        ├── LogFailedError        it broke under us (disk, database); writes stop
        │   └── LogUnavailableError   the database is out of reach: this batch failed, later ones may not
        ├── LogReadOnlyError      the database role may not write (a privilege is missing); reads go on
        ├── LogCorruptError       a damaged record followed by valid ones
        └── LogFormatError        not a tuco log, or a format we cannot read

Every error carries a stable machine-readable ``code``, the HTTP ``status``
it is answered with and the ``headers`` that go with it (``Allow``,
``Retry-After``, ``WWW-Authenticate``) (the one error table: psycopg looks errors up by SQLSTATE,
tuco by class); the JSON error body carries the code.

This is the one public module of the errors: the root, the protocol errors and
the log's are defined in private modules (``_errors_base``, ``_errors_protocol``,
``_errors_log``) and re-exported here, where they say they live (``__module__``).
"""

from __future__ import annotations

from tuco._errors_base import Headers, TucoError
from tuco._errors_log import (
    LogClosedError,
    LogCorruptError,
    LogError,
    LogFailedError,
    LogFormatError,
    LogReadOnlyError,
    LogUnavailableError,
)
from tuco._errors_protocol import (
    BadRequestError,
    CancelledError,
    ExpectationFailedError,
    HeadersTooLargeError,
    MethodNotAllowedError,
    NotFoundError,
    ProtocolError,
    RequestTimeoutError,
    ServerBusyError,
    ShuttingDownError,
    StartingError,
    TooManyConnectionsError,
    UnsupportedTransferCodingError,
    UriTooLongError,
)

__all__ = [
    "BadRequestError",
    "CancelledError",
    "ConfigurationError",
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
    "StoreFullError",
    "StreamingUnsupportedError",
    "TokenLimitError",
    "TokenNotFoundError",
    "TooManyConnectionsError",
    "TooManyWatchersError",
    "TucoError",
    "TxnBytesLimitError",
    "TxnOpsLimitError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedTransferCodingError",
    "UriTooLongError",
    "ValueTooLargeError",
    "WatcherShareError",
]


class NoSuchKeyError(TucoError, KeyError):
    """The key is not in the store."""

    code = "no_such_key"
    status = 404

    def __str__(self) -> str:
        return f"no such key: {self.args[0]!r}" if self.args else "no such key"


class PreconditionFailedError(TucoError):
    """A conditional write was refused: the key's ``mod_revision`` is not what the condition required.

    ``current`` is the key's mod_revision when the condition was decided (0: absent).
    """

    code = "precondition_failed"
    status = 412

    def __init__(self, key: str, current: int) -> None:
        super().__init__(key, current)
        self.key = key
        self.current = current

    def __str__(self) -> str:
        state = f"is at revision {self.current}" if self.current else "does not exist"
        return f"the condition did not hold: the key {state}"


class HistoryCompactedError(TucoError):
    """The revision asked for is older than the history still retained.

    ``oldest`` is the oldest revision that can still be served.
    """

    code = "history_compacted"
    status = 410

    def __init__(self, oldest: int) -> None:
        super().__init__(oldest)
        self.oldest = oldest

    def __str__(self) -> str:
        return (
            f"that revision is no longer retained; the oldest available is {self.oldest}: ask for revision "
            f"{self.oldest} or later (start_revision={self.oldest} for a watch), or read without a revision for "
            "the current state; more history is kept with a larger TUCO_HISTORY_MAX_BYTES"
        )


class RevisionAheadError(TucoError):
    """A client resumes after a revision this store has not reached: re-read what it needs, then watch again.

    ``requested`` is the revision the client says it has seen (a watch's ``Last-Event-ID``,
    ``start_revision`` - 1, a long poll's ``wait_revision`` - 1); ``revision`` is the
    store's. It happens when a server is restored from an older backup and clients
    reconnect: serving the resume point would skip every write from ``revision`` + 1
    up to it, and progress frames would claim revisions that do not exist here.
    """

    code = "revision_ahead"
    status = 409

    def __init__(self, requested: int, revision: int, *, read: bool = False) -> None:
        super().__init__(requested, revision)
        self.requested = requested
        self.revision = revision
        self.read = read  # a read at a revision (a typo, most likely), not a resume

    def __str__(self) -> str:
        if self.read:
            return (
                f"revision {self.requested} is ahead of this store, which is at revision {self.revision}: "
                f"read at {self.revision} or lower, or wait for it with wait_revision"
            )
        return (
            f"revision {self.requested} is ahead of this store, which is at revision {self.revision} "
            "(restored from an older state?); re-read the keys and watch again from now"
        )


class TooManyWatchersError(TucoError):
    """As many watch streams as ``TUCO_WATCH_MAX_WATCHERS`` allows are open; retry later."""

    code = "too_many_watchers"
    status = 503


class WatcherShareError(TooManyWatchersError):
    """The principal holds as many watch streams as its share of the cap allows; close one first."""

    code = "watcher_limit"
    status = 429


class LeaseNotFoundError(TucoError):
    """The lease does not exist: never granted, revoked, or past its deadline. ``lease`` is its id."""

    code = "no_such_lease"
    status = 404

    def __init__(self, lease: int) -> None:
        super().__init__(lease)
        self.lease = lease

    def __str__(self) -> str:
        return "no such lease (never granted, revoked, or expired)"


class LeaseLimitError(TucoError):
    """A grant over TUCO_MAX_LEASES (or the principal's share of it), or an attach over TUCO_MAX_KEYS_PER_LEASE."""

    code = "lease_limit"
    status = 429


class UnauthorizedError(TucoError):
    """The request carries no usable credential: answered 401 with ``WWW-Authenticate: Bearer``.

    The message never says which of missing, malformed, unknown, revoked or expired it was
    (the audit log line does), so a client cannot probe token ids.
    """

    code = "unauthorized"
    status = 401

    def __init__(self, message: str = "", challenge: bytes | None = b'Bearer realm="tuco"') -> None:
        super().__init__(message)
        self.challenge = challenge

    @property
    def headers(self) -> Headers:
        """``WWW-Authenticate`` with the challenge, if any (an expired client certificate has none)."""
        return ((b"WWW-Authenticate", self.challenge),) if self.challenge is not None else ()


class ForbiddenError(TucoError):
    """The credential is valid but holds no grant for what the request asks."""

    code = "forbidden"
    status = 403


class TokenNotFoundError(TucoError):
    """No such token: never created, or revoked."""

    code = "no_such_token"
    status = 404


class TokenLimitError(TucoError):
    """Creating a token would go over the number of live tokens the store keeps."""

    code = "token_limit"
    status = 429


class StoreFullError(TucoError):
    """The store is at TUCO_MAX_STORE_BYTES or TUCO_MAX_STORE_KEYS: a write that would grow it is refused.

    Nothing was written. Reads, deletes and writes that do not grow the store are
    still served; delete keys (or raise the bound) and writes are taken again.
    """

    code = "store_full"
    status = 507


class SnapshotError(TucoError):
    """A snapshot cannot be taken now (too many at once, a read-through replica), or was abandoned midway.

    Abandoned midway (more keys changed during it than TUCO_SNAPSHOT_MAX_CHANGES),
    its stream ends without a trailer, which every reader refuses: take it again.
    """

    code = "snapshot_unavailable"
    status = 503


class SnapshotFormatError(SnapshotError):
    """A snapshot file that is not a tuco snapshot, is of another format version, damaged or truncated."""

    code = "snapshot_format"
    status = 422


class InvalidRequestError(TucoError):
    """A request the client must change before it can succeed."""

    code = "invalid_request"
    status = 400


class InvalidKeyError(InvalidRequestError):
    """The key is empty, not valid UTF-8 after percent-decoding, or over the limit."""

    code = "invalid_key"
    status = 400


class KeyTooLongError(InvalidKeyError):
    """The key is over the configured limit."""

    code = "key_too_long"
    status = 414


class ValueTooLargeError(InvalidRequestError):
    """The value is over the configured limit."""

    code = "value_too_large"
    status = 413

    @classmethod
    def over(cls, limit: int) -> ValueTooLargeError:
        """The error for a body over ``limit`` bytes, naming the cap and its setting."""
        return cls(
            f"the value is over the {limit}-byte limit (TUCO_MAX_VALUE_BYTES): send a smaller value, "
            "split it across keys, or raise the limit"
        )


class InvalidPreconditionError(InvalidRequestError):
    """A conditional header tuco does not accept: weak tags, lists, garbage, or both If-Match and If-None-Match."""

    code = "invalid_precondition"
    status = 400


class InvalidPageTokenError(InvalidRequestError):
    """A page token that tuco did not issue, or issued for another listing (another prefix)."""

    code = "invalid_page_token"
    status = 400


class InvalidParameterError(InvalidRequestError):
    """A query parameter with a value out of its range."""

    code = "invalid_parameter"
    status = 400


class InvalidBodyError(InvalidRequestError):
    """A body that cannot be read as sent: an API Gateway event marked base64 whose body is not."""

    code = "invalid_body"
    status = 400


class InvalidEventError(InvalidRequestError):
    """An API Gateway event tuco cannot read: not an object, a field of the wrong type, text that is not Unicode.

    Answered 400 rather than raised: a handler that raises makes the gateway answer a bare 502.
    """

    code = "invalid_event"
    status = 400


class InvalidTxnError(InvalidRequestError):
    """A transaction tuco cannot run: a malformed body, or a key written twice (or under a range it deletes)."""

    code = "invalid_txn"
    status = 400


class TxnOpsLimitError(InvalidRequestError):
    """A transaction with more compares and operations than ``TUCO_MAX_TXN_OPS``; nothing was done."""

    code = "txn_ops_limit"
    status = 413


class TxnBytesLimitError(InvalidRequestError):
    """A transaction whose keys and values are larger than ``TUCO_MAX_TXN_BYTES``; nothing was done."""

    code = "txn_bytes_limit"
    status = 413


class StreamingUnsupportedError(TucoError):
    """A Server-Sent Events watch asked behind an API gateway, which buffers whole responses: long-poll instead."""

    code = "streaming_unsupported"
    status = 501


class ConfigurationError(TucoError):
    """Settings that cannot work; reported as one line at start-up."""

    code = "invalid_configuration"
    status = 500


class UnavailableError(TucoError):
    """The server answered 503 with a code no other class covers (``starting``, ``shutting_down``...).

    Raised by :mod:`tuco.client`; ``code`` is the server's. Try again later, or another replica.
    """

    code = "unavailable"
    status = 503


class ServerUnreachableError(TucoError):
    """No answer came: the connection was refused, reset or timed out (raised by :mod:`tuco.client`).

    If the request was a write that had been sent, it may or may not have been applied.
    """

    code = "server_unreachable"
    status = 503
