"""Transactions: compares, then one branch of operations, all at one revision.

A transaction is decided where conditional writes are decided (the one-writer
logs: :func:`decide`, against the applied state when its batch commits; the
PostgreSQL log: its ``tuco_txn`` function, under the head lock). Its writes are
recorded as ONE event of type ``TXN`` whose value lists them, expanded (a
``delete_prefix`` as the DELETEs of the keys it found, a ``ttl`` as its
deadline), so applying or replaying it needs no state and no clock, and every
replica applies the same changes at the same revision.

The encoded writes are ``type i16 | key length u32 | value length u32 |
deadline i64 | lease i64 | key | value`` each, big-endian (what PostgreSQL's
``int2send``/``int4send``/``int8send`` write, so the database builds the same
bytes).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol

from tuco.core.events import Entry, Event, EventType, Lifetime
from tuco.errors import InvalidTxnError, LeaseNotFoundError, LogFormatError

__all__ = [
    "COMPARE_OPS",
    "COMPARE_TARGETS",
    "Compare",
    "OpResult",
    "Overlay",
    "Txn",
    "TxnOp",
    "TxnOutcome",
    "TxnState",
    "compare_holds",
    "decide",
    "decide_batch",
    "decode_writes",
    "encode_writes",
    "txn_bytes",
]

COMPARE_TARGETS = ("value", "mod_revision", "create_revision", "version", "exists")
COMPARE_OPS = ("==", "!=", "<", ">")
OP_KINDS = ("put", "delete", "delete_prefix", "get", "list")
WRITE_KINDS = frozenset(("put", "delete", "delete_prefix"))
_WRITE = struct.Struct(">hIIqq")
_PUT = EventType.PUT
_DELETE = EventType.DELETE


class Compare(NamedTuple):
    """``key``'s ``target`` compared by ``op`` with ``value`` (bytes for ``value``, else an int; ``exists`` 0 or 1)."""

    key: str
    target: str
    op: str
    value: int | bytes


class TxnOp(NamedTuple):
    """One operation: ``kind`` on ``key`` (the prefix for ``delete_prefix`` and ``list``).

    ``ttl`` (ms) or ``lease`` for a put; ``limit`` for a list.
    """

    kind: str
    key: str
    value: bytes = b""
    ttl: int = 0
    lease: int = 0
    limit: int = 0


class Txn(NamedTuple):
    """If every compare holds, ``success`` runs, else ``failure``."""

    compare: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]


class OpResult(NamedTuple):
    """What one operation did or read.

    put: ``revision``; delete and delete_prefix: ``deleted``; get: ``entry`` (None:
    absent) and ``expires_at``; list: ``items`` (key, entry) and ``more``.
    """

    kind: str
    key: str
    revision: int = 0
    deleted: int = 0
    entry: Entry | None = None
    expires_at: int = 0
    items: tuple[tuple[str, Entry], ...] = ()
    more: bool = False


class TxnOutcome(NamedTuple):
    """A decided transaction: which branch ran, at which revision, its event (None: it wrote nothing) and results."""

    succeeded: bool
    revision: int
    event: Event | None
    results: tuple[OpResult, ...]


class TxnState(Protocol):
    """What deciding reads of the applied state: a one-writer log's sink (the store behind it)."""

    def record(self, key: str) -> tuple[bytes, int, int, int] | None:
        """The key's ``(value, create_revision, mod_revision, version)`` as logged (expired or not), None if absent."""
        ...

    def keys_under(self, prefix: str) -> Iterator[str]:
        """The logged keys starting with ``prefix``, in order."""
        ...

    def key_expiry(self, key: str) -> int | None:
        """When ``key`` expires (Unix ms; 0: its lease is gone), None without a deadline."""
        ...

    def lease(self, id: int) -> tuple[int, int] | None:
        """The lease's ``(ttl, deadline)``, None if there is none."""
        ...


def txn_bytes(txn: Txn) -> int:
    """The keys' UTF-8 and the values' bytes of every compare and operation: what TUCO_MAX_TXN_BYTES bounds."""
    total = 0
    for compare in txn.compare:
        total += len(compare.key.encode()) + (len(compare.value) if isinstance(compare.value, bytes) else 8)
    for op in (*txn.success, *txn.failure):
        total += len(op.key.encode()) + len(op.value)
    return total


def check_branch(ops: Sequence[TxnOp]) -> None:
    """Raise InvalidTxnError if a branch writes a key twice, or writes a key under a prefix it deletes.

    As etcd refuses: the order of two writes of one key in one revision would be invisible to every reader.
    """
    keys: set[str] = set()
    prefixes: list[str] = []
    for op in ops:
        if op.kind in ("put", "delete"):
            if op.key in keys:
                raise InvalidTxnError(f"the key {op.key!r} is written twice in one branch")
            keys.add(op.key)
        elif op.kind == "delete_prefix":
            prefixes.append(op.key)
    for i, prefix in enumerate(prefixes):
        for other in prefixes[i + 1 :]:
            if other.startswith(prefix) or prefix.startswith(other):
                raise InvalidTxnError(f"the ranges {prefix!r} and {other!r} overlap in one branch")
        for key in keys:
            if key.startswith(prefix):
                raise InvalidTxnError(f"the key {key!r} is written in the range {prefix!r} the branch deletes")


def compare_holds(compare: Compare, found: tuple[bytes, int, int, int] | None) -> bool:
    """Whether ``compare`` holds for a key whose record is ``found`` (None: absent; a value compare is then false)."""
    target = compare.target
    if target == "value":
        if found is None:
            return False
        left: int | bytes = found[0]
    elif target == "exists":
        left = 0 if found is None else 1
    elif found is None:
        left = 0
    else:
        left = found[{"mod_revision": 2, "create_revision": 1, "version": 3}[target]]
    right = compare.value
    op = compare.op
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right  # type: ignore[operator]  # parsing gives value compares bytes, the others ints
    return left > right  # type: ignore[operator]


def decide(txn: Txn, state: TxnState, sequence: int, now: int) -> TxnOutcome | LeaseNotFoundError:
    """Run ``txn`` against ``state`` as the event at ``sequence``, the log's clock reading ``now``.

    The operations run in order (a get after a put of its key reads the put).
    A put on a lease that does not exist (or has expired) refuses the whole
    transaction: LeaseNotFoundError, nothing written.
    """
    succeeded = all(compare_holds(c, state.record(c.key)) for c in txn.compare)
    ops = txn.success if succeeded else txn.failure
    written: dict[str, tuple[bytes, int, int, int] | None] = {}
    expiring: dict[str, int | None] = {}  # deadlines this transaction gave (None: it made the key permanent)
    writes: list[tuple[EventType, str, bytes, int, int]] = []
    results: list[OpResult] = []

    def current(key: str) -> tuple[bytes, int, int, int] | None:
        return written[key] if key in written else state.record(key)

    def live(key: str) -> tuple[bytes, int, int, int] | None:
        found = current(key)
        if found is None:
            return None
        deadline = expiring[key] if key in expiring else state.key_expiry(key)
        return None if deadline is not None and deadline <= now else found

    for op in ops:
        kind, key = op.kind, op.key
        if kind == "put":
            deadline = 0
            if op.lease:
                lease = state.lease(op.lease)
                if lease is None or lease[1] <= now:
                    return LeaseNotFoundError(op.lease)
            elif op.ttl:
                deadline = now + op.ttl
            old = current(key)
            written[key] = (
                (op.value, sequence, sequence, 1) if old is None else (op.value, old[1], sequence, old[3] + 1)
            )
            if op.lease:
                expiring[key] = (state.lease(op.lease) or (0, 0))[1]
            else:
                expiring[key] = deadline or None  # a PUT without a ttl makes the key permanent
            writes.append((_PUT, key, op.value, deadline, op.lease))
            results.append(OpResult(kind, key, revision=sequence))
        elif kind == "delete":
            deleted = 1 if live(key) is not None else 0
            written[key] = None
            writes.append((_DELETE, key, b"", 0, 0))
            results.append(OpResult(kind, key, deleted=deleted))
        elif kind == "delete_prefix":
            found = [k for k in state.keys_under(key) if k not in written]
            count = 0
            for k in found:
                if live(k) is not None:
                    count += 1
                written[k] = None
                writes.append((_DELETE, k, b"", 0, 0))
            results.append(OpResult(kind, key, deleted=count))
        elif kind == "get":
            entry = live(key)
            expires_at = 0
            if entry is not None:
                expires_at = (expiring[key] if key in expiring else state.key_expiry(key)) or 0
            got = Entry(*entry) if entry is not None else None
            results.append(OpResult(kind, key, entry=got, expires_at=expires_at))
        else:
            results.append(_list(op, state, written, live))
    if not writes:
        return TxnOutcome(succeeded, sequence - 1, None, tuple(results))
    event = Event(sequence, EventType.TXN, "", encode_writes(writes))
    return TxnOutcome(succeeded, sequence, event, tuple(results))


def _list(
    op: TxnOp,
    state: TxnState,
    written: Mapping[str, object],
    live: Callable[[str], tuple[bytes, int, int, int] | None],
) -> OpResult:
    """A bounded listing under ``op.key`` as the transaction sees it so far."""
    prefix = op.key
    mine = sorted(k for k in written if k.startswith(prefix))
    items: list[tuple[str, Entry]] = []
    previous = None
    for key in heapq.merge(state.keys_under(prefix), mine):
        if key == previous:
            continue
        previous = key
        entry = live(key)
        if entry is None:
            continue
        if len(items) == op.limit:
            return OpResult("list", prefix, items=tuple(items), more=True)
        items.append((key, Entry(*entry)))
    return OpResult("list", prefix, items=tuple(items))


def encode_writes(writes: Iterable[tuple[EventType, str, bytes, int, int]]) -> bytes:
    """A TXN event's value: each ``(type, key, value, deadline, lease)`` in order (see the module docstring)."""
    parts: list[bytes] = []
    pack = _WRITE.pack
    for type, key, value, deadline, lease in writes:
        key_bytes = key.encode("utf-8")
        parts.append(pack(type, len(key_bytes), len(value), deadline, lease) + key_bytes + value)
    return b"".join(parts)


def decode_writes(sequence: int, data: bytes) -> list[Event]:
    """The PUT and DELETE events a TXN event at ``sequence`` holds, in order; LogFormatError if ``data`` is damaged."""
    events: list[Event] = []
    pos = 0
    size = len(data)
    head = _WRITE.size
    while pos < size:
        if size - pos < head:
            raise LogFormatError(f"transaction {sequence}: a write is cut short at byte {pos}")
        type, key_length, value_length, deadline, lease = _WRITE.unpack_from(data, pos)
        start = pos + head
        end = start + key_length + value_length
        if type not in (1, 2) or end > size:
            raise LogFormatError(f"transaction {sequence}: malformed write at byte {pos} (type {type})")
        try:
            key = data[start : start + key_length].decode()
        except UnicodeDecodeError:
            raise LogFormatError(f"transaction {sequence}: a key is not valid UTF-8") from None
        if type == 1:
            lifetime = Lifetime(deadline, lease) if deadline or lease else None
            events.append(Event(sequence, _PUT, key, data[start + key_length : end], 0, 0, lifetime))
        else:
            events.append(Event(sequence, _DELETE, key))
        pos = end
    return events


class Overlay:
    """The state a batch's earlier transactions left on top of the applied one: what a later one is decided against.

    So a one-writer log commits many transactions in one batch (one write, one sync), each decided as if
    the ones before it were applied.
    """

    def __init__(self, base: TxnState) -> None:
        self.base = base
        self.records: dict[str, tuple[bytes, int, int, int] | None] = {}
        self.deadlines: dict[str, int | None] = {}

    def record(self, key: str) -> tuple[bytes, int, int, int] | None:
        return self.records[key] if key in self.records else self.base.record(key)

    def keys_under(self, prefix: str) -> Iterator[str]:
        mine = sorted(key for key in self.records if key.startswith(prefix))
        previous = None
        for key in heapq.merge(self.base.keys_under(prefix), mine):
            if key != previous and self.record(key) is not None:
                yield key
            previous = key

    def key_expiry(self, key: str) -> int | None:
        return self.deadlines[key] if key in self.deadlines else self.base.key_expiry(key)

    def lease(self, id: int) -> tuple[int, int] | None:
        return self.base.lease(id)

    def apply(self, event: Event) -> None:
        """Take a decided transaction's writes into the overlay, as the store will apply them."""
        for write in decode_writes(event.sequence, event.value):
            key = write.key
            if write.type is _DELETE:
                self.records[key] = None
                self.deadlines[key] = None
                continue
            old = self.record(key)
            sequence = write.sequence
            self.records[key] = (
                (write.value, sequence, sequence, 1) if old is None else (write.value, old[1], sequence, old[3] + 1)
            )
            if write.lease:
                self.deadlines[key] = (self.base.lease(write.lease) or (0, 0))[1]
            else:
                self.deadlines[key] = write.deadline or None


def decide_batch(txns: Sequence[Txn], state: TxnState, first: int, now: int) -> list[TxnOutcome | LeaseNotFoundError]:
    """Decide consecutive transactions in order from sequence ``first``, each against what the earlier ones left."""
    overlay = Overlay(state)
    outcomes: list[TxnOutcome | LeaseNotFoundError] = []
    sequence = first
    for txn in txns:
        outcome = decide(txn, overlay if len(txns) > 1 else state, sequence, now)
        outcomes.append(outcome)
        if isinstance(outcome, TxnOutcome) and outcome.event is not None:
            overlay.apply(outcome.event)
            sequence += 1
    return outcomes
