"""What a write must pass before it goes to the log: the request limits, the store bound and the caps.

Caps count the writes in flight as well as what the store holds: a slot is
reserved before the write goes out and released the moment the log decided it
(grants, in all and per principal; keys being attached, per lease; tokens being
created). Without that, concurrent requests would all pass a check of the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tuco.core.events import Event
from tuco.core.leases import Lease
from tuco.core.store import ENTRY_BYTES, Store
from tuco.core.tokens import MAX_TOKENS, Principal
from tuco.core.txn import Txn, txn_bytes
from tuco.errors import (
    InvalidKeyError,
    InvalidParameterError,
    KeyTooLongError,
    LeaseLimitError,
    StoreFullError,
    TokenLimitError,
    TxnBytesLimitError,
    TxnOpsLimitError,
    ValueTooLargeError,
)

__all__ = ["Caps", "Limits", "reserved"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes a client may send."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 1 << 20
    max_buffered_bytes: int = 64 << 20
    """Bodies being received, all requests together (the ASGI front end; the native server has its own)."""
    max_ttl_ms: int = 365 * 86_400_000
    """Longest time to live of a key or a lease."""
    max_leases: int = 10_000
    max_keys_per_lease: int = 10_000
    max_leases_per_principal: int = 0
    """Live leases one principal may hold (admins excepted); 0: a quarter of ``max_leases``."""

    @property
    def lease_share(self) -> int:
        """How many leases one principal may hold: the setting, or a quarter of the cap (at least 1)."""
        return self.max_leases_per_principal or max(1, self.max_leases // 4)

    max_store_bytes: int = 1 << 30
    """Bytes the store may hold (:attr:`~tuco.core.store.Store.bytes`); 0: no bound."""
    max_store_keys: int = 10_000_000
    """Keys the store may hold; 0: no bound."""
    snapshot_max_bytes: int = 256 << 20
    """Before images a running snapshot may keep of the keys written during it; past it, it is abandoned."""
    max_txn_ops: int = 10_000
    """Compares and operations of one transaction, both branches together (``TUCO_MAX_TXN_OPS``)."""
    max_txn_bytes: int = 8 << 20
    """Keys and values of one transaction, both branches together (``TUCO_MAX_TXN_BYTES``)."""

    @property
    def txn_body_bytes(self) -> int:
        """The largest ``POST /v1/txn`` body read: room for a transaction at both caps, written as JSON.

        Base64 makes a value 4/3 of its size, and each compare or operation adds its names, brackets and numbers;
        the caps themselves are checked on what the body holds. Never below the largest value's body.
        """
        return max(self.max_value_bytes, 2 * self.max_txn_bytes + TXN_OP_JSON_BYTES * self.max_txn_ops)


TXN_OP_JSON_BYTES = 256
"""Room one compare or operation of a transaction takes in its JSON besides its key and value."""


def _room(limits: Limits) -> int:
    """The store size below which a write of N more bytes (plus an entry) passes both bounds without a look-up.

    Every key costs at least ENTRY_BYTES + 1 bytes, so a store under ``max_store_keys`` times that
    holds fewer keys than the bound.
    """
    bounds = [limits.max_store_bytes, limits.max_store_keys * (ENTRY_BYTES + 1) - 1]
    return min((bound for bound in bounds if bound > 0), default=1 << 62) - ENTRY_BYTES


class Caps:
    """The limits of ``limits`` checked against ``store`` and the writes in flight.

    ``bounded`` False: the store holds no full copy (a read-through replica), so the store bound is not checked.
    """

    def __init__(self, limits: Limits, store: Store, *, bounded: bool = True) -> None:
        self.limits = limits
        self.store = store
        self.bounded = bounded and bool(limits.max_store_bytes or limits.max_store_keys)
        self._room = _room(limits)
        self.refusals = 0
        """Writes refused because the store is at its bound (TUCO_MAX_STORE_BYTES or TUCO_MAX_STORE_KEYS)."""
        self._refused_at: tuple[int, int] | None = None  # the store's (bytes, keys) when a write was last refused
        self._granting = 0
        self._granting_by: dict[str, int] = {}
        self._attaching: dict[int, dict[str, int]] = {}
        self._creating_tokens = 0

    def check_write(self, key: str, value: bytes) -> None:
        """The key and value limits of every PUT (raises the InvalidRequestError at once)."""
        limits = self.limits
        if not key:
            raise InvalidKeyError("the key is empty: name one, e.g. PUT /v1/key/app/config")
        # A key of n characters has at most 4n UTF-8 bytes: most keys need no encoding to be checked.
        if len(key) * 4 > limits.max_key_bytes and (size := len(key.encode())) > limits.max_key_bytes:
            raise KeyTooLongError(
                f"the key is {size} bytes; the limit is {limits.max_key_bytes} (TUCO_MAX_KEY_BYTES): use a shorter key"
            )
        if len(value) > limits.max_value_bytes:
            raise ValueTooLargeError.over(limits.max_value_bytes)
        # Far from both bounds (nearly always) no entry is looked up: 4 bytes per character covers any key's UTF-8.
        if self.bounded and self.store.bytes + 4 * len(key) + len(value) > self._room:
            self._check_room(key, value)

    def _check_room(self, key: str, value: bytes) -> None:
        """StoreFullError for a write that would take the store past a bound, checked against what was applied.

        A write that does not grow the store passes (a rewrite as long or shorter); writes already in
        flight are not counted, so concurrent ones can pass a bound by what the log holds queued.
        """
        store, limits = self.store, self.limits
        max_bytes = limits.max_store_bytes
        if max_bytes:
            growth = store.growth(key, value)
            if growth > 0 and store.bytes + growth > max_bytes:
                self.refusals += 1
                self._refused_at = (store.bytes, len(store))
                raise StoreFullError(
                    f"the store holds {store.bytes} bytes and this write would take it past its bound of "
                    f"{max_bytes} (TUCO_MAX_STORE_BYTES): delete keys, or raise the bound"
                )
        max_keys = limits.max_store_keys
        if max_keys and len(store) >= max_keys and key not in store:
            self.refusals += 1
            self._refused_at = (store.bytes, len(store))
            raise StoreFullError(
                f"the store holds {len(store)} keys, its bound (TUCO_MAX_STORE_KEYS): delete keys, or raise the bound"
            )

    def check_txn(self, txn: Txn) -> None:
        """A transaction's caps, each put's key and value limits and ttl, and the store bound for either branch.

        Raises before anything is queued: a transaction over a cap changes nothing.
        """
        limits = self.limits
        ops = len(txn.compare) + len(txn.success) + len(txn.failure)
        if ops > limits.max_txn_ops:
            raise TxnOpsLimitError(
                f"the transaction has {ops} compares and operations; "
                f"the limit is {limits.max_txn_ops} (TUCO_MAX_TXN_OPS)"
            )
        size = txn_bytes(txn)
        if size > limits.max_txn_bytes:
            raise TxnBytesLimitError(
                f"the transaction's keys and values are {size} bytes; the limit is {limits.max_txn_bytes} "
                "(TUCO_MAX_TXN_BYTES)"
            )
        for branch in (txn.success, txn.failure):
            growth = 0
            new_keys = 0
            for op in branch:
                if op.kind != "put":
                    continue
                bounded, self.bounded = self.bounded, False  # the branch's growth is counted below, as a whole
                try:
                    self.check_write(op.key, op.value)
                finally:
                    self.bounded = bounded
                if op.ttl:
                    self.check_ttl(op.ttl)
                growth += self.store.growth(op.key, op.value)
                new_keys += op.key not in self.store
            if self.bounded and growth > 0:
                self._check_growth(growth, new_keys)

    def _check_growth(self, growth: int, new_keys: int) -> None:
        """StoreFullError if ``growth`` bytes and ``new_keys`` keys more would take the store past a bound."""
        store, limits = self.store, self.limits
        if (limits.max_store_bytes and store.bytes + growth > limits.max_store_bytes) or (
            limits.max_store_keys and new_keys and len(store) + new_keys > limits.max_store_keys
        ):
            self.refusals += 1
            self._refused_at = (store.bytes, len(store))
            raise StoreFullError(
                f"the store holds {store.bytes} bytes and {len(store)} keys; this transaction would take it past "
                "its bound (TUCO_MAX_STORE_BYTES, TUCO_MAX_STORE_KEYS): nothing was written"
            )

    def check_ttl(self, ttl_ms: int) -> None:
        if not 1 <= ttl_ms <= self.limits.max_ttl_ms:
            raise InvalidParameterError(
                f"ttl must be from 1 ms to {self.limits.max_ttl_ms // 1000} s (TUCO_MAX_TTL_SECONDS)"
            )

    def store_status(self) -> dict[str, object]:
        """The store's size against its bounds; ``full``: writes are being refused (see ``Service.store_status``)."""
        store, limits = self.store, self.limits
        keys = len(store)
        refused = self._refused_at
        full = (
            (0 < limits.max_store_bytes < store.bytes + ENTRY_BYTES + 1)
            or (0 < limits.max_store_keys <= keys)
            or (refused is not None and store.bytes >= refused[0] and keys >= refused[1])
        )
        return {
            "bytes": store.bytes,
            "max_bytes": limits.max_store_bytes,
            "keys": keys,
            "max_keys": limits.max_store_keys,
            "full": full,
        }

    def grant(self, owner: Principal | None, write: Callable[[], Awaitable[Event]]) -> Awaitable[Event]:
        """``write()`` of a lease grant for ``owner`` within TUCO_MAX_LEASES and the owner's share of it.

        Raises LeaseLimitError at the cap, or at ``owner``'s share (admins have none), grants in flight included.
        """
        limits = self.limits
        leases = self.store.leases
        if len(leases) + self._granting >= limits.max_leases:
            raise LeaseLimitError(
                f"{limits.max_leases} leases are live or being granted, the most this store keeps (TUCO_MAX_LEASES)"
            )
        name = owner.name if owner is not None and not owner.admin else ""
        if name:
            share = limits.lease_share
            if leases.owned_by(name) + self._granting_by.get(name, 0) >= share:
                raise LeaseLimitError(
                    f"this credential holds {share} leases, its share of TUCO_MAX_LEASES "
                    "(TUCO_MAX_LEASES_PER_PRINCIPAL); revoke one first"
                )
            self._granting_by[name] = self._granting_by.get(name, 0) + 1
        self._granting += 1

        def release() -> None:
            self._granting -= 1
            if name:
                left = self._granting_by[name] - 1
                if left:
                    self._granting_by[name] = left
                else:
                    del self._granting_by[name]

        return reserved(write, release)

    def attach(self, lease: Lease, key: str, write: Callable[[], Awaitable[Event]]) -> Awaitable[Event]:
        """``write()`` of ``key`` onto ``lease`` within TUCO_MAX_KEYS_PER_LEASE, counting attaches in flight."""
        pending = self._attaching.get(lease.id)
        if key not in lease.keys and (pending is None or key not in pending):
            held = len(lease.keys) + (sum(1 for k in pending if k not in lease.keys) if pending else 0)
            if held >= self.limits.max_keys_per_lease:
                raise LeaseLimitError(
                    f"the lease holds {self.limits.max_keys_per_lease} keys, the most one lease may hold "
                    "(TUCO_MAX_KEYS_PER_LEASE)"
                )
        if pending is None:
            pending = self._attaching[lease.id] = {}
        pending[key] = pending.get(key, 0) + 1

        def release() -> None:
            left = pending[key] - 1
            if left:
                pending[key] = left
                return
            del pending[key]
            if not pending and self._attaching.get(lease.id) is pending:
                del self._attaching[lease.id]

        return reserved(write, release)

    def check_tokens(self) -> None:
        """TokenLimitError when MAX_TOKENS tokens exist or are being created."""
        if len(self.store.tokens) + self._creating_tokens >= MAX_TOKENS:
            raise TokenLimitError(f"{MAX_TOKENS} tokens exist or are being created, the most this store keeps")

    def create_token(self, write: Callable[[], Awaitable[Event]]) -> Awaitable[Event]:
        """``write()`` of a token, counted among the tokens being created until the log decides it."""
        self._creating_tokens += 1

        def release() -> None:
            self._creating_tokens -= 1

        return reserved(write, release)


def reserved(write: Callable[[], Awaitable[Event]], release: Callable[[], None]) -> Awaitable[Event]:
    """``write()``, with ``release`` called exactly once: when the log decided it, or at once if it cannot start.

    The group commit's writes take a callback that runs in the pass that applies their batch, so a slot
    is handed back in the same step as the store counts what took it: never counted twice, never lost.
    """
    try:
        written = write()
    except BaseException:
        release()
        raise
    if hasattr(written, "add_done_callback"):
        written.add_done_callback(lambda _: release())
        return written
    return _released_after(written, release)


async def _released_after(written: Awaitable[Event], release: Callable[[], None]) -> Event:
    try:
        return await written
    finally:
        release()
