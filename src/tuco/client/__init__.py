"""Talk to a tuco server from Python: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both are thin senders of the same operations (``tuco.client._calls``), so they
agree on every path, header, retry and error. Errors are tuco's exception tree
(:mod:`tuco.errors`).
"""

from tuco.client._async import AsyncClient
from tuco.client._calls import Entry, Item, Lease, LeaseSummary, Page, RevokedLease, Written
from tuco.client._keeper import KeptLease
from tuco.client._options import Backoff
from tuco.client._sync import Client
from tuco.client._tokens import Grant, Token
from tuco.client._txn import Listed, Ops, RangeDeleted, Txn, TxnResult
from tuco.client._watch import WatchEvent

__all__ = [
    "AsyncClient",
    "Backoff",
    "Client",
    "Entry",
    "Grant",
    "Item",
    "KeptLease",
    "Lease",
    "LeaseSummary",
    "Listed",
    "Ops",
    "Page",
    "RangeDeleted",
    "RevokedLease",
    "Token",
    "Txn",
    "TxnResult",
    "WatchEvent",
    "Written",
]
