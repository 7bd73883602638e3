"""Consistent snapshots of a store that keeps changing: copy-on-write before images, never a copy of the store.

A snapshot is the state at revision R, the store's revision when it starts.
Its keys are walked in key order, a chunk at a time, while writes go on
between chunks. The first time a key changes after R, the snapshot keeps
its *before image* (its entry, deadline and lease at R, or "absent"); the
entry tuples are shared with the store, so an image costs a dict slot and
keeps alive only a value the store has replaced. A walked key is emitted as
its before image if it has one, else as it is now (unchanged since R); keys
created after R are skipped; keys deleted after R, which the walk no longer
finds, are emitted from their images at the end. Memory therefore grows with
the writes during a snapshot, not with the store, and is bounded: past
``max_bytes`` of images the snapshot is abandoned (:class:`~tuco.errors.SnapshotError`)
rather than grown without limit. Leases and tokens are few (their caps bound
them) and copied at R.

The walk knows whether it has passed a key (keys sort, and the walk's cursor
is the last key walked), so a key changed after the walk passed it is already
emitted and its image is kept only to be skipped at the end.

A PUT or DELETE changes its key; a kind registered in :data:`KEYS_OF` (a
transaction's writes, say) the keys its function names; lease and token
records change no key. Any other kind while a snapshot runs abandons it, so a
snapshot is never silently inconsistent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from tuco.core.events import Event, EventType
from tuco.core.snapshot import KeyRecord, LeaseRecord, SnapshotEncoder, TokenEntry
from tuco.core.store import ENTRY_BYTES, Store
from tuco.core.tokens import encode_record
from tuco.core.txn import decode_writes
from tuco.errors import SnapshotError

__all__ = ["DEFAULT_MAX_BYTES", "KEYS_OF", "SnapshotState", "Snapshots", "encode_state"]

DEFAULT_MAX_BYTES = 256 << 20
_KEY_KINDS = frozenset((EventType.PUT, EventType.DELETE))
_NO_KEY_KINDS = frozenset(
    (
        EventType.LEASE_GRANT,
        EventType.LEASE_KEEPALIVE,
        EventType.LEASE_REVOKE,
        EventType.TOKEN_CREATE,
        EventType.TOKEN_REVOKE,
    )
)


def _txn_keys(event: Event) -> list[str]:
    return [write.key for write in decode_writes(event.sequence, event.value)]


KEYS_OF: dict[int, Callable[[Event], Iterable[str]]] = {EventType.TXN: _txn_keys}
"""The keys an event of another kind changes (a transaction's: its writes' keys); register new kinds here."""
_State = tuple[tuple[bytes, int, int, int], int, int] | None


class SnapshotState:
    """One snapshot being taken: its revision, the before images it needs, and its walk's position."""

    __slots__ = ("_images", "_passed", "cursor", "failed", "image_bytes", "leases", "max_bytes", "revision", "tokens")

    def __init__(self, store: Store, max_bytes: int, now: int) -> None:
        self.revision = store.last_sequence
        self.max_bytes = max_bytes
        self._images: dict[str, _State] = {}
        self._passed: set[str] = set()  # keys with an image that the walk already emitted
        self.cursor: str | None = None
        self.failed: str | None = None
        self.image_bytes = 0
        self.leases = [LeaseRecord(lease.id, lease.ttl, lease.deadline, lease.owner) for lease in store.leases]
        self.tokens = [TokenEntry(token.id, encode_record(token), token.created) for token in store.tokens.live(now)]

    def changing(self, store: Store, key: str) -> None:
        """``key`` is about to change: keep its state at R if this is its first change since."""
        if self.failed is not None or key in self._images:
            return
        state = store.key_state(key)
        self._images[key] = state
        if self.cursor is not None and key <= self.cursor:
            self._passed.add(key)
        self.image_bytes += ENTRY_BYTES + len(key) + (len(state[0][0]) if state is not None else 0)
        if self.image_bytes > self.max_bytes:
            self.fail(
                f"more than {self.max_bytes} bytes of keys changed while it ran (TUCO_SNAPSHOT_MAX_BYTES); "
                "take it again when writes are fewer, or raise the bound"
            )

    def fail(self, reason: str) -> None:
        """Abandon the snapshot: its images are dropped, and its walk raises at its next chunk."""
        self.failed = reason
        self._images.clear()
        self._passed.clear()

    def chunk(self, store: Store, limit: int) -> list[KeyRecord] | None:
        """The next up to ``limit`` keys of the walk at R (maybe none), None once the walk is done.

        Raises SnapshotError if the snapshot was abandoned.
        """
        if self.failed is not None:
            raise SnapshotError(f"the snapshot was abandoned: {self.failed}")
        keys = store.keys_after(self.cursor, limit)
        if not keys:
            return None
        records: list[KeyRecord] = []
        images = self._images
        for key in keys:
            if key in images:
                state = images[key]
                self._passed.add(key)
            else:
                state = store.key_state(key)
            if state is not None:
                (value, create_revision, mod_revision, version), deadline, lease = state
                if mod_revision <= self.revision:  # else created after R (an image would have said so)
                    records.append(KeyRecord(key, value, create_revision, mod_revision, version, deadline, lease))
        self.cursor = keys[-1]
        return records

    def deleted(self) -> Iterator[KeyRecord]:
        """The keys that were live at R, deleted since and not met by the walk (call once the walk is done)."""
        if self.failed is not None:
            raise SnapshotError(f"the snapshot was abandoned: {self.failed}")
        for key, state in self._images.items():
            if state is not None and key not in self._passed:
                (value, create_revision, mod_revision, version), deadline, lease = state
                yield KeyRecord(key, value, create_revision, mod_revision, version, deadline, lease)


class Snapshots:
    """The snapshots a store's owner is taking: call :meth:`before` with every event before applying it."""

    __slots__ = ("max_bytes", "max_running", "running")

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_running: int = 2) -> None:
        self.max_bytes = max_bytes
        self.max_running = max_running
        self.running: list[SnapshotState] = []
        """The snapshots in progress (changed only by :meth:`begin` and :meth:`end`). A plain list, so the
        check every applied event makes (``if snapshots.running``) is no Python call."""

    def __len__(self) -> int:
        return len(self.running)

    def begin(self, store: Store, now: int) -> SnapshotState:
        """Start a snapshot at the store's revision; SnapshotError over ``max_running`` at once."""
        if len(self.running) >= self.max_running:
            raise SnapshotError(f"{self.max_running} snapshots are being taken already; try again when one ends")
        state = SnapshotState(store, self.max_bytes, now)
        self.running.append(state)
        return state

    def end(self, state: SnapshotState) -> None:
        if state in self.running:
            self.running.remove(state)

    def before(self, store: Store, event: Event) -> None:
        """Keep what the running snapshots need of the state ``event`` is about to change."""
        type = event[1]
        if type in _KEY_KINDS:
            for state in self.running:
                state.changing(store, event[2])
        elif type in KEYS_OF:
            for key in KEYS_OF[type](event):
                for state in self.running:
                    state.changing(store, key)
        elif type not in _NO_KEY_KINDS:
            for state in self.running:
                state.fail(f"a change of a kind it cannot follow ({type!r}) arrived")


def encode_state(state: SnapshotState, store: Store, taken_at: int, chunk_keys: int) -> Iterator[bytes | None]:
    """The snapshot's bytes, a chunk at a time; ``None`` between chunks is where its taker lets writes in."""
    encoder = SnapshotEncoder(state.revision, taken_at)
    parts = [encoder.header()]
    parts += [encoder.lease(lease) for lease in state.leases]
    parts += [encoder.token(token) for token in state.tokens]
    yield b"".join(parts)
    while True:
        yield None
        records = state.chunk(store, chunk_keys)
        if records is None:
            break
        if records:
            yield b"".join([encoder.key(record) for record in records])
    parts = [encoder.key(record) for record in state.deleted()]
    parts.append(encoder.trailer())
    yield b"".join(parts)
