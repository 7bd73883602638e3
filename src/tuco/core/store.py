"""The in-memory state: the map that readers are served from, with revisions and an ordered scan.

Entries are plain ``(value, create_revision, mod_revision, version)`` tuples
(an :class:`~tuco.core.events.Entry` without the NamedTuple's constructor), the
cheapest record per key. The key order for listings is a ``SortedList``
built on the first listing, not at start-up: replay stays a dict update per
event, and a process nobody lists from never pays for the index.

The store knows its size (:attr:`Store.bytes`): each key's UTF-8, its value's
bytes and :data:`ENTRY_BYTES` for what Python spends on an entry, kept as
events are applied, so a bound on it (``TUCO_MAX_STORE_BYTES``) is checked
without walking anything.

Keys with a deadline (their own, or their lease's) live in a second dict, so
the lookup of a key without one is the same single dict operation as before
expiry existed, and only a miss looks further. An expired key is never
returned (lookups, listings), even before its DELETE is logged: the store is
handed a clock (``now``, Unix milliseconds), the one its log decides expiry by.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from operator import itemgetter
from typing import Any, Final

from sortedcontainers import SortedList

from tuco.core._expiry import due_at, watch_again
from tuco.core._listing import Item, Page, collect_page
from tuco.core._untrack import untracked as _untracked
from tuco.core.events import Entry, Event, EventType, Lifetime, PlainWrites
from tuco.core.history import AgedHistory, Group, History
from tuco.core.leases import Due, Leases
from tuco.core.origin import Origin
from tuco.core.tokens import Tokens, decode_record
from tuco.core.txn import decode_writes
from tuco.errors import NoSuchKeyError

__all__ = ["ENTRY_BYTES", "ExpiringEntry", "Item", "Page", "Store", "key_bytes"]

_native_apply: Callable[[dict[str, tuple[bytes, int, int, int]], list[str], list[bytes | None], int, int], int] | None
try:  # the compiled build's C loop for a run of plain writes (entries made untracked by the collector)
    from tuco.core._native import apply_plain as _native_apply
except ImportError:
    _native_apply = None

DEFAULT_HISTORY_BYTES: Final = 32 << 20
ENTRY_BYTES: Final = 240
"""What a key costs beyond its UTF-8 and its value's bytes: its str and bytes headers, the entry tuple
and its integers, the dict's slot (tracemalloc: 207 to 224 bytes with 16- and 64-byte keys, 10,000 and
100,000 keys), with room for the dict's growth."""
_new: Final = tuple.__new__
_first: Final = itemgetter(0)
_PUT: Final = EventType.PUT
_DELETE: Final = EventType.DELETE
_GRANT: Final = EventType.LEASE_GRANT
_HEAP_SLACK: Final = 4096  # stale expirer items tolerated beyond twice the live ones
_KEEPALIVE: Final = EventType.LEASE_KEEPALIVE
_TOKEN_CREATE: Final = EventType.TOKEN_CREATE
_TOKEN_REVOKE: Final = EventType.TOKEN_REVOKE
_TXN: Final = EventType.TXN


def _never() -> int:
    return 0


def key_bytes(key: str) -> int:
    """The key's length in UTF-8 (its length, for the ASCII keys nearly all are: no encoding)."""
    return len(key) if key.isascii() else len(key.encode())


class ExpiringEntry(Exception):
    """Raised by :meth:`Store.lookup` for a live key with a deadline, carrying its entry and ``expires_at``.

    An exception, so the lookup of a key without a deadline stays one dict
    operation and the HTTP layer still learns when a key expires.
    """

    def __init__(self, entry: Entry, expires_at: int) -> None:
        super().__init__(entry, expires_at)
        self.entry = entry
        self.expires_at = expires_at


class Store:
    """A ``key -> entry`` map that changes only by applying logged events in order.

    Every mutation goes through :meth:`apply` (or :meth:`apply_batch` during
    replay), which remembers the last sequence applied and skips anything at or
    below it, so an event delivered twice (a follower catching up after a
    reconnect) is never applied twice. The store is used from one event loop
    thread; reads are single dict operations.
    """

    __slots__ = (
        "_data",
        "_deadline",
        "_expiring",
        "_index",
        "_key_lease",
        "_uncounted",
        "bytes",
        "find",
        "history",
        "last_sequence",
        "leases",
        "now",
        "tokens",
    )

    def __init__(
        self, *, history_bytes: int = DEFAULT_HISTORY_BYTES, now: Callable[[], int] = _never, history_age_ms: int = 0
    ) -> None:
        self._data: dict[str, tuple[bytes, int, int, int]] = {}
        self.find: Callable[[str], tuple[bytes, int, int, int] | None] = self._data.get
        """A key's ``(value, create_revision, mod_revision, version)`` if it has no deadline, else None.

        The dict's own lookup, for the read path: None means absent *or* expiring, so a caller
        that gets None asks :meth:`lookup`, which knows about deadlines.
        """
        self._expiring: dict[str, tuple[bytes, int, int, int]] = {}  # keys with a deadline, and only they
        self._deadline: dict[str, int] = {}  # a key's own deadline (PUT ?ttl=), Unix ms
        self._key_lease: dict[str, int] = {}  # a key's lease (PUT ?lease=)
        self.leases = Leases()
        self.tokens = Tokens()
        """The live tokens: built from the log's token events, in a namespace no key request reaches."""
        self._index: SortedList | None = None
        self.history = (
            AgedHistory(history_bytes, max_age_ms=history_age_ms) if history_age_ms else History(history_bytes)
        )
        self.last_sequence = 0
        self.now = now
        """The clock expiry is decided by (Unix ms); the default never expires anything."""
        self.bytes = 0
        """The keys' UTF-8 and the values' bytes, plus :data:`ENTRY_BYTES` per key: what TUCO_MAX_STORE_BYTES bounds."""
        self._uncounted = False  # a batch left :attr:`bytes` to be counted by recount_bytes

    def get(self, key: str) -> bytes:
        """Return the value of ``key``; raise :class:`NoSuchKeyError` if absent (or expired)."""
        return self.entry(key)[0]

    def entry(self, key: str) -> Entry:
        """Return the value and revisions of ``key``; raise :class:`NoSuchKeyError` if absent (or expired)."""
        found = self.read(key)
        if found is None:
            raise NoSuchKeyError(key)
        return found.entry if isinstance(found, ExpiringEntry) else found

    def lookup(self, key: str) -> Entry:
        """:meth:`entry` for the read path: a live key with a deadline raises :class:`ExpiringEntry` instead.

        Raises :class:`NoSuchKeyError` if absent or expired.
        """
        found = self.read(key)
        if found is None:
            raise NoSuchKeyError(key)
        if isinstance(found, ExpiringEntry):
            raise found
        return found

    def read(self, key: str) -> Entry | ExpiringEntry | None:
        """:meth:`lookup` without raising: the HTTP read path's, where a miss is as common as a hit.

        A live key with a deadline is its :class:`ExpiringEntry` (returned, not raised); absent or expired, None.
        """
        found = self._data.get(key)
        if found is not None:
            return _new(Entry, found)
        found = self._expiring.get(key)
        if found is not None:
            expires_at = self.expires_at(key)
            if expires_at > self.now():
                return ExpiringEntry(_new(Entry, found), expires_at)
        return None

    def mod_revision(self, key: str) -> int:
        """The revision that last wrote ``key``, 0 if it is absent: what preconditions compare.

        A key past its deadline whose DELETE is not logged yet still counts: the log decides by its own records.
        """
        found = self._data.get(key)
        if found is None:
            found = self._expiring.get(key)
        return found[2] if found is not None else 0

    def __contains__(self, key: object) -> bool:
        return key in self._data or key in self._expiring

    def __len__(self) -> int:
        return len(self._data) + len(self._expiring)

    def growth(self, key: str, value: bytes) -> int:
        """How many bytes :attr:`bytes` would grow by if ``key`` held ``value`` (negative: it would shrink)."""
        found = self._data.get(key)
        if found is None:
            found = self._expiring.get(key)
        if found is None:
            return (len(key) if key.isascii() else len(key.encode())) + len(value) + ENTRY_BYTES
        return len(value) - len(found[0])

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Iterate over a snapshot of the current pairs."""
        return iter([(key, entry[0]) for key, entry in chain(self._data.items(), self._expiring.items())])

    def apply(self, event: Event) -> bool:
        """Apply ``event`` if it is newer than the last one applied; return whether it was.

        The change is recorded in :attr:`history` with the entry it replaced.
        On the write path of every replica, so kept to one unpack and one dict update.
        """
        sequence, type, key, value, create_revision, version, lifetime, origin = event
        if sequence <= self.last_sequence and (sequence < self.last_sequence or not create_revision):
            return False  # (a snapshot's keys one transaction wrote share its revision: each is applied)
        data = self._data
        old = data.get(key)
        if type is _PUT:
            if lifetime is not None:
                old = self._put_expiring(key, value, create_revision, sequence, version, lifetime, old)
            else:
                if old is None and self._expiring:
                    old = self._unexpire(key)
                # The revisions as the event and the old entry hold them (``shared``): the compiled build
                # would box a new int object for each field, one more per key than pure Python keeps.
                shared: Any = event
                if create_revision:
                    entry = (value, shared[4], shared[0], version)
                elif old is None:
                    entry = (value, shared[0], shared[0], 1)
                else:
                    kept: Any = old
                    entry = (value, kept[1], shared[0], old[3] + 1)
                # Bytes and ints: untracked now rather than by the next young collection, which then has less
                # to visit (the compiled build's C helper; the pure build leaves it to the collector).
                untrack = _untracked
                data[key] = entry if untrack is None else untrack(entry)
                self.bytes += (
                    len(value) - len(old[0])
                    if old is not None
                    else (len(key) if key.isascii() else len(key.encode())) + len(value) + ENTRY_BYTES
                )
            if old is None and self._index is not None:
                self._index.add(key)
            code = 1
        elif type is _DELETE:
            if old is not None:
                del data[key]
            elif self._expiring:
                old = self._unexpire(key)
            if old is not None:
                self.bytes -= (len(key) if key.isascii() else len(key.encode())) + len(old[0]) + ENTRY_BYTES
                if self._index is not None:
                    self._index.remove(key)
            code = 2
        else:  # lease or token bookkeeping: no key changes, but the revision moves (History keeps a placeholder)
            if type is _TXN:
                self._apply_txn(sequence, value, origin)
                return True
            if type is _TOKEN_CREATE or type is _TOKEN_REVOKE:
                self._apply_token(type, sequence, key, value)
            else:
                self._apply_lease(type, sequence, lifetime, value)
            self.last_sequence = sequence
            self.history.record(sequence, int(type), "", b"", None, origin)
            return True
        self.last_sequence = sequence
        self.history.record(sequence, code, key, value, old, origin)
        return True

    def apply_batch(self, events: Iterable[Event], *, recount: bool = True) -> None:
        """Apply many events in order: the replay loop, kept tight because start-up time depends on it.

        Replay records no history: afterwards only the replayed revision can be listed. :attr:`bytes` is
        kept exact by a run of :class:`PlainWrites`; after any other batch it is counted afresh from the
        entries, an O(keys) pass: a caller applying a log's batches one after the other passes
        ``recount=False`` and calls :meth:`recount_bytes` once after the last (a million keys in 33 batches
        spent a second recounting).
        """
        if type(events) is PlainWrites and not self._expiring and events.first_sequence > self.last_sequence:
            last = self._apply_plain(events)
        else:
            last = self._apply_events(events)
            self._uncounted = True
        if recount:
            self.recount_bytes()
        self.last_sequence = last
        self._index = None
        self.history.reset(last)

    def _apply_plain(self, writes: PlainWrites) -> int:
        """Apply a run of writes that all follow the last applied, when no key has a deadline; return the last sequence.

        Most of a log's replay is here: an entry per PUT, as :meth:`apply` derives it, and no event ever built.
        """
        if _native_apply is not None:
            self.bytes += _native_apply(self._data, writes.keys, writes.values, writes.first_sequence, ENTRY_BYTES)
            return writes.first_sequence + len(writes.keys) - 1
        data = self._data
        values = writes.values
        sequence = writes.first_sequence
        grown = 0  # what :attr:`bytes` changes by
        for i, key in enumerate(writes.keys):
            value = values[i]
            if value is not None:
                revision: Any = sequence  # one int object for both revisions (see apply)
                old = data.get(key)  # (setdefault would probe once for a new key, but it is no C call when compiled)
                if old is None:
                    data[key] = (value, revision, revision, 1)
                    grown += (len(key) if key.isascii() else len(key.encode())) + len(value) + ENTRY_BYTES
                else:
                    kept: Any = old
                    data[key] = (value, kept[1], revision, old[3] + 1)
                    grown += len(value) - len(old[0])
            elif (gone := data.pop(key, None)) is not None:
                grown -= (len(key) if key.isascii() else len(key.encode())) + len(gone[0]) + ENTRY_BYTES
            sequence += 1
        self.bytes += grown
        return sequence - 1

    def _apply_events(self, events: Iterable[Event]) -> int:
        """Apply events one by one, skipping any at or below the last applied; return the last sequence."""
        data = self._data
        get = data.get
        pop = data.pop
        last = self.last_sequence
        put = EventType.PUT
        delete = EventType.DELETE
        expiring = self._expiring
        for event in events:
            sequence, type, key, value, create_revision, version, lifetime, _ = event
            if sequence <= last and (sequence < last or not create_revision):
                continue
            if type is put:
                shared: Any = event  # its revisions as it holds them: one int object per key (see apply)
                if lifetime is not None:
                    self._put_expiring(key, value, create_revision, sequence, version, lifetime, get(key))
                elif create_revision:
                    if expiring:
                        self._unexpire(key)
                    data[key] = (value, shared[4], shared[0], version)
                elif (old := get(key)) is None:
                    if expiring and (old := self._unexpire(key)) is not None:
                        kept: Any = old
                        data[key] = (value, kept[1], shared[0], old[3] + 1)
                    else:
                        data[key] = (value, shared[0], shared[0], 1)
                else:
                    kept = old
                    data[key] = (value, kept[1], shared[0], old[3] + 1)
            elif type is delete:
                if pop(key, None) is None and expiring:
                    self._unexpire(key)
            elif type is _TOKEN_CREATE or type is _TOKEN_REVOKE:
                self._apply_token(type, sequence, key, value)
            elif type is _TXN:
                self.last_sequence = last
                self._apply_txn(sequence, value)
            else:
                self._apply_lease(type, sequence, lifetime, value)
            last = sequence
        return last

    def _apply_txn(self, sequence: int, writes: bytes, origin: Origin | None = None) -> None:
        """Apply a transaction's writes, each as its own event would be but all at ``sequence``; History: one change."""
        history = self.history
        group = Group()
        self.history = group
        try:
            for event in decode_writes(sequence, writes):
                self.last_sequence = sequence - 1
                self.apply(event)
        finally:
            self.history = history
            self.last_sequence = sequence
        history.record_group(sequence, group.changes, origin)

    def record(self, key: str) -> tuple[bytes, int, int, int] | None:
        """The key's ``(value, create_revision, mod_revision, version)`` as logged, expired or not; None if absent."""
        found = self._data.get(key)
        return found if found is not None else self._expiring.get(key)

    def keys_under(self, prefix: str) -> Iterator[str]:
        """The keys (expired ones whose DELETE is not logged too) starting with ``prefix``, in order."""
        for key in self._keys_from(prefix, None):
            if not key.startswith(prefix):
                return
            yield key

    def recount_bytes(self) -> None:
        """Count :attr:`bytes` from the entries, if a batch applied with ``recount=False`` left it inexact."""
        if self._uncounted:
            self.bytes = self._count_bytes()
            self._uncounted = False

    def entry_bytes(self, overhead: int) -> int:
        """The live keys' UTF-8 and values' bytes plus ``overhead`` per key, from :attr:`bytes` (O(1)).

        What the entries take in a format spending ``overhead`` bytes on each beside its key and value:
        the file log sizes its next compaction by it at start-up without a pass over a million keys.
        """
        return self.bytes - (len(self._data) + len(self._expiring)) * (ENTRY_BYTES - overhead)

    def _count_bytes(self) -> int:
        """:attr:`bytes` counted from the entries (joining the keys costs their length, briefly)."""
        total = 0
        for entries in (self._data, self._expiring):
            keys = "".join(entries)
            total += len(keys) if keys.isascii() else len(keys.encode())
            total += sum(map(len, map(_first, entries.values()))) + ENTRY_BYTES * len(entries)
        return total

    def snapshot(self) -> dict[str, bytes]:
        """A copy of the whole state's values, for tests and compaction."""
        return {key: entry[0] for key, entry in chain(self._data.items(), self._expiring.items())}

    def record_at(self, key: str, revision: int) -> tuple[bytes, int, int, int] | None:
        """The key's entry as it was at ``revision`` (None: absent then); HistoryCompactedError once it is gone."""
        if revision >= self.last_sequence:
            return self.record(key)
        changed = self.history.state_at(revision)
        return changed[key] if key in changed else self.record(key)

    def entries(self) -> dict[str, tuple[bytes, int, int, int]]:
        """A copy of every key's ``(value, create_revision, mod_revision, version)``: what compaction rewrites.

        One C-level dict copy (the entry tuples are immutable and shared), so
        the file log can take it between two batches without holding writers up.
        """
        if not self._expiring:
            return dict(self._data)
        return {**self._data, **self._expiring}

    def key_state(self, key: str) -> tuple[tuple[bytes, int, int, int], int, int] | None:
        """The key's entry as logged (expired or not) with its own deadline and its lease (0: none); None if absent.

        What a snapshot keeps of a key (see :mod:`tuco.core.snapshot`).
        """
        entry = self._data.get(key)
        if entry is not None:
            return entry, 0, 0
        entry = self._expiring.get(key)
        if entry is None:
            return None
        return entry, self._deadline.get(key, 0), self._key_lease.get(key, 0)

    def keys_after(self, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` keys (expired ones not yet deleted too) sorting after ``after`` (None: from the first).

        A walk in chunks that re-seeks each time, so writes between chunks never invalidate it.
        """
        if self._index is None:
            self._index = SortedList(chain(self._data, self._expiring))
        index = self._index
        keys = index.irange(minimum=after, inclusive=(False, True)) if after is not None else iter(index)
        return list(islice(keys, limit))

    # -- expiry and leases --------------------------------------------------------

    def expires_at(self, key: str) -> int:
        """When ``key`` expires (Unix ms): its own deadline or its lease's; 0 for a key whose lease is gone.

        Only meaningful for a key that has a deadline (see :meth:`has_deadline`).
        """
        own = self._deadline.get(key)
        if own is not None:
            return own
        lease = self.leases.get(self._key_lease.get(key, 0))
        return lease.deadline if lease is not None else 0

    def has_deadline(self, key: str) -> bool:
        return key in self._expiring

    def key_expiry(self, key: str) -> int | None:
        """:meth:`expires_at` for a key with a deadline, None for one without (or absent): what one-writer logs ask."""
        return self.expires_at(key) if key in self._expiring else None

    def lease(self, id: int) -> tuple[int, int] | None:
        """The lease's ``(ttl, deadline)``, None if there is none (expired leases stay until revoked)."""
        found = self.leases.get(id)
        return (found.ttl, found.deadline) if found is not None else None

    def lease_of(self, key: str) -> int:
        """The lease ``key`` is attached to (0: none)."""
        return self._key_lease.get(key, 0)

    def expiry_state(self) -> tuple[dict[str, int], dict[str, int], list[tuple[int, int, int, str]]]:
        """Copies of the keys' own deadlines, their leases, and each lease's ``(id, ttl, deadline, owner)``.

        What a compaction keeps.
        """
        leases = [(lease.id, lease.ttl, lease.deadline, lease.owner) for lease in self.leases]
        return dict(self._deadline), dict(self._key_lease), leases

    def due(self, now: int, limit: int | None = None) -> Due:
        """What has expired at ``now`` and must be deleted through the log: keys (with their mod_revision), leases.

        Each is handed out once; call :meth:`retry_later` for what could not be written.
        ``limit`` bounds the deadlines looked at (a lease's keys all come with it): the
        rest stay due for the next call, so 100,000 leases ending at once are handed
        out in rounds instead of one long pause.
        """
        return due_at(self.leases, self._expiring, self.expires_at, now, limit)

    def retry_later(self, keys: Iterable[str], lease_ids: Iterable[int], when: int) -> None:
        """Look again at ``when`` at the keys and leases that are still there (their expiry write did not happen)."""
        watch_again(self.leases, keys, lease_ids, when, self._expiring, self._key_lease, self.expires_at)

    def _put_expiring(
        self,
        key: str,
        value: bytes,
        create_revision: int,
        sequence: int,
        version: int,
        lifetime: Lifetime,
        old: tuple[bytes, int, int, int] | None,
    ) -> tuple[bytes, int, int, int] | None:
        """Apply a PUT that gives ``key`` a deadline or a lease; return the entry it replaced."""
        deadline, lease, _ = lifetime
        if old is not None:
            del self._data[key]
        else:
            old = self._unexpire(key)
        if create_revision:
            entry = (value, create_revision, sequence, version)
        elif old is None:
            entry = (value, sequence, sequence, 1)
        else:
            entry = (value, old[1], sequence, old[3] + 1)
        self._expiring[key] = entry
        self.bytes += (
            len(value) - len(old[0])
            if old is not None
            else (len(key) if key.isascii() else len(key.encode())) + len(value) + ENTRY_BYTES
        )
        if lease:
            self._key_lease[key] = lease
            found = self.leases.get(lease)
            if found is not None:
                found.keys.add(key)
            else:  # its lease is already gone (revoked meanwhile): it is due at once
                self.leases.watch_key(key, 0)
        else:
            self._deadline[key] = deadline
            self.leases.watch_key(key, deadline)
        self._bound_heap()
        return old

    def _bound_heap(self) -> None:
        """Rebuild the expirer's heap when stale items outnumber live ones (O(n), amortised O(1) per write)."""
        leases = self.leases
        live = len(self._expiring) + len(leases)
        if leases.pending() > 2 * live + _HEAP_SLACK:
            key_lease = self._key_lease
            leases.rebuild(
                [(key, self.expires_at(key)) for key in self._expiring if leases.get(key_lease.get(key, 0)) is None]
            )

    def _unexpire(self, key: str) -> tuple[bytes, int, int, int] | None:
        """Take ``key`` out of the keys with a deadline; return its entry (None if it had none)."""
        entry = self._expiring.pop(key, None)
        if entry is None:
            return None
        self._deadline.pop(key, None)
        lease_id = self._key_lease.pop(key, None)
        if lease_id is not None:
            lease = self.leases.get(lease_id)
            if lease is not None:
                lease.keys.discard(key)
        return entry

    def _apply_token(self, type: EventType, sequence: int, id: str, value: bytes) -> None:
        if type is _TOKEN_REVOKE:
            self.tokens.revoke(id)
            return
        try:
            record = decode_record(id, value, sequence)
        except (ValueError, KeyError, TypeError):  # checksummed but unreadable: refuse it rather than grant anything
            return
        self.tokens.create(record)

    def _apply_lease(self, type: EventType, sequence: int, lifetime: Lifetime | None, owner: bytes) -> None:
        """Apply a lease record; a grant's value is its owner (UTF-8, empty for none)."""
        deadline, lease_id, ttl = lifetime if lifetime is not None else (0, 0, 0)
        leases = self.leases
        if type is _GRANT:
            leases.grant(lease_id or sequence, ttl, deadline, owner.decode("utf-8", "replace") if owner else "")
        elif type is _KEEPALIVE:
            leases.keepalive(lease_id, deadline)
            self._bound_heap()
        else:
            revoked = leases.revoke(lease_id)
            if revoked is not None:
                for key in revoked.keys:  # still attached: they expire now (their DELETEs were refused or raced)
                    leases.watch_key(key, 0)

    def page(self, prefix: str, *, after: str | None = None, limit: int, revision: int | None = None) -> Page:
        """Up to ``limit`` keys starting with ``prefix`` and sorting after ``after``, as they were at ``revision``.

        Keys sort by code point, which is their UTF-8 byte order. ``revision``
        defaults to the current one; an older one is rebuilt from
        :attr:`history` (:class:`~tuco.errors.HistoryCompactedError` once it is
        gone). Costs O(log n + limit), plus the changes since ``revision``.
        """
        current = self.last_sequence
        if revision is None or revision >= current:
            revision = current
            changed: dict[str, Entry | None] = {}
        else:
            changed = self.history.state_at(revision)
        expiring = self._expiring
        now = self.now() if expiring else 0
        keys = self._keys_from(prefix, after)
        return collect_page(keys, prefix, after, limit, revision, changed, self._data, expiring, self.expires_at, now)

    def _keys_from(self, prefix: str, after: str | None) -> Iterator[str]:
        """Current keys in order, from the first that could start with ``prefix`` and follow ``after``."""
        if self._index is None:
            self._index = SortedList(chain(self._data, self._expiring))
        index = self._index
        if after is not None and after >= prefix:
            return iter(index.irange(minimum=after, inclusive=(False, True)))
        return iter(index.irange(minimum=prefix))
