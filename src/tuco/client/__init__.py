"""Talk to a tuco server from Python: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both are thin senders of the same operations (``tuco.client._calls``), so they
agree on every path, header, retry and error. Errors are tuco's exception tree
(:mod:`tuco.errors`), plus the few only a client raises (:class:`SessionLostError`,
:class:`LockTimeoutError`, :class:`OutcomeUnknownError`). On top of them: sessions,
locks with fencing tokens, semaphores, elections and counters. Importing this
package loads no server module (and needs only httpx).
"""

from tuco.client._async import AsyncClient
from tuco.client._async_coord import AsyncElection, AsyncLock, AsyncSemaphore
from tuco.client._calls import Entry, Item, Lease, LeaseSummary, Page, RevokedLease, Written
from tuco.client._counter import AsyncCounter, Counter
from tuco.client._election import Election
from tuco.client._errors import LockTimeoutError, OutcomeUnknownError, SessionLostError
from tuco.client._keeper import KeptLease
from tuco.client._lock import Lock
from tuco.client._options import Backoff
from tuco.client._queue import Leader
from tuco.client._semaphore import Semaphore
from tuco.client._session import AsyncSession, Session
from tuco.client._sync import Client
from tuco.client._tokens import Grant, Token
from tuco.client._txn import Listed, Ops, RangeDeleted, Txn, TxnResult
from tuco.client._watch import WatchEvent

__all__ = [
    "AsyncClient",
    "AsyncCounter",
    "AsyncElection",
    "AsyncLock",
    "AsyncSemaphore",
    "AsyncSession",
    "Backoff",
    "Client",
    "Counter",
    "Election",
    "Entry",
    "Grant",
    "Item",
    "KeptLease",
    "Leader",
    "Lease",
    "LeaseSummary",
    "Listed",
    "Lock",
    "LockTimeoutError",
    "Ops",
    "OutcomeUnknownError",
    "Page",
    "RangeDeleted",
    "RevokedLease",
    "Semaphore",
    "Session",
    "SessionLostError",
    "Token",
    "Txn",
    "TxnResult",
    "WatchEvent",
    "Written",
]
