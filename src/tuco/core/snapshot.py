"""The snapshot format, as pure functions over bytes: a whole state at one revision, verifiable as it streams.

A snapshot is a header, records in the log's own framing (:mod:`tuco.core.codec`)
and a trailer::

    header  = magic "TUCOSNAP" (8) | format version u32 | reserved u32 | revision u64 | taken at (Unix ms) u64
    record  = payload length u32 | CRC-32 of payload u32 | payload      (as in the log)
    trailer = the record framing around: revision u64 | 255 u8 | 0 u32 | keys u64 | leases u64 | tokens u64
              | SHA-256 (32) of every byte before the trailer

The records are the compacted section's entries, the same bytes a compacted
log holds: a key entry (kinds 3 and 8: value, create revision, mod revision
as the sequence, version, deadline and lease), a lease entry (9 and 14: id,
ttl, deadline, owner) and a token entry (12: its record, with the SHA-256 of
its secret, never the secret). Unlike a log's section they come in any order
(a server walks its keys in the order it holds them, without sorting a copy),
so a restore sorts them as it writes its log.

What is checked, so that a damaged file is refused rather than restored: the
magic and version, each record's CRC and framing, that its kind is one of the
above and no revision is past the header's, that the trailer comes once, last,
with counts that match, and the digest over everything before it. A file that
ends before its trailer is truncated (a server that abandons a snapshot just
stops: what it sent is refused as truncated).

The snapshot is the state, never the history: new event kinds change how a
state is reached, not what it is, so they need no new record here.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import NamedTuple

from tuco.core._format import (
    _ENTRY,
    _EXPIRING_ENTRY,
    _FRAME,
    _LEASE_ENTRY,
    _OWNED_LEASE_ENTRY,
    _PAIR,
    _PAYLOAD,
    _REVISIONS,
    _TOKEN_ENTRY,
    MAX_PAYLOAD_BYTES,
    crc32,
)
from tuco.core.codec import encode_entry, encode_lease_entry, encode_token_entry
from tuco.errors import SnapshotFormatError

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SNAPSHOT_VERSION",
    "Item",
    "KeyRecord",
    "LeaseRecord",
    "SnapshotDecoder",
    "SnapshotEncoder",
    "SnapshotHeader",
    "SnapshotSummary",
    "TokenEntry",
]

MAGIC = b"TUCOSNAP"
SNAPSHOT_VERSION = 1
"""The snapshot format version this build writes and reads."""
_HEADER = struct.Struct("<8sIIQQ")
HEADER_SIZE = _HEADER.size
_TRAILER = 255
_COUNTS = struct.Struct("<QQQ")
_DIGEST_SIZE = 32
_TRAILER_PAYLOAD = _PAYLOAD.size + _COUNTS.size + _DIGEST_SIZE
_MAX_RECORD = MAX_PAYLOAD_BYTES + _REVISIONS.size


class SnapshotHeader(NamedTuple):
    """What a snapshot's header says: its format version, the revision it is the state at, when it was taken."""

    version: int
    revision: int
    taken_at: int


class KeyRecord(NamedTuple):
    """One live key at the snapshot's revision (``deadline`` Unix ms and ``lease`` 0 for none)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    deadline: int = 0
    lease: int = 0


class LeaseRecord(NamedTuple):
    """One lease: its id (the revision of its grant), ttl (ms), deadline (Unix ms) and owner."""

    id: int
    ttl: int
    deadline: int
    owner: str = ""


class TokenEntry(NamedTuple):
    """One live token: its id, its record as the log keeps it (no secret) and its creation's revision."""

    id: str
    record: bytes
    created: int


class SnapshotSummary(NamedTuple):
    """A whole, verified snapshot: its header's fields, what it holds and its size."""

    version: int
    revision: int
    taken_at: int
    keys: int
    leases: int
    tokens: int
    bytes: int
    sha256: str


class SnapshotEncoder:
    """Frames a snapshot: :meth:`header`, then a record per key, lease and token in any order, then :meth:`trailer`.

    It keeps the running digest and the counts the trailer carries; every
    method returns the bytes to send next.
    """

    __slots__ = ("_digest", "keys", "leases", "revision", "taken_at", "tokens")

    def __init__(self, revision: int, taken_at: int) -> None:
        self.revision = revision
        self.taken_at = taken_at
        self._digest = hashlib.sha256()
        self.keys = 0
        self.leases = 0
        self.tokens = 0

    def header(self) -> bytes:
        data = _HEADER.pack(MAGIC, SNAPSHOT_VERSION, 0, self.revision, self.taken_at)
        self._digest.update(data)
        return data

    def key(self, record: KeyRecord) -> bytes:
        key, value, create_revision, mod_revision, version, deadline, lease = record
        data = encode_entry(key, value, create_revision, mod_revision, version, deadline, lease)
        self._digest.update(data)
        self.keys += 1
        return data

    def lease(self, record: LeaseRecord) -> bytes:
        data = encode_lease_entry(*record)
        self._digest.update(data)
        self.leases += 1
        return data

    def token(self, entry: TokenEntry) -> bytes:
        data = encode_token_entry(*entry)
        self._digest.update(data)
        self.tokens += 1
        return data

    def trailer(self) -> bytes:
        payload = (
            _PAYLOAD.pack(self.revision, _TRAILER, 0)
            + _COUNTS.pack(self.keys, self.leases, self.tokens)
            + self._digest.digest()
        )
        return _FRAME.pack(len(payload), crc32(payload)) + payload


Item = KeyRecord | LeaseRecord | TokenEntry


class SnapshotDecoder:
    """Turns a snapshot's bytes, fed in chunks of any size, into its records, verifying as it goes.

    Raises :class:`~tuco.errors.SnapshotFormatError` at the first fault, naming
    the offset; :meth:`finish` raises unless the trailer arrived and checked out
    (so a truncated file is refused), and returns the summary.
    """

    __slots__ = ("_buffer", "_counts", "_digest", "_summary", "header", "offset")

    def __init__(self) -> None:
        self._buffer = b""
        self._digest = hashlib.sha256()
        self._counts = [0, 0, 0]
        self._summary: SnapshotSummary | None = None
        self.header: SnapshotHeader | None = None
        self.offset = 0
        """Bytes decoded and checked so far (records whole)."""

    def feed(self, data: bytes) -> list[Item]:
        """The records completed by ``data``."""
        buffer = self._buffer + data if self._buffer else data
        items: list[Item] = []
        pos = 0
        if self.header is None:
            if len(buffer) < HEADER_SIZE:
                self._buffer = buffer
                return items
            self.header = _decode_header(buffer)
            self._digest.update(buffer[:HEADER_SIZE])
            pos = self.offset = HEADER_SIZE
        while pos + _FRAME.size <= len(buffer):
            if self._summary is not None:
                raise SnapshotFormatError(f"{len(buffer) - pos} bytes after the trailer at offset {self.offset}")
            length, crc = _FRAME.unpack_from(buffer, pos)
            if not _PAYLOAD.size <= length <= _MAX_RECORD:
                raise SnapshotFormatError(f"the record at offset {self.offset} declares an impossible length {length}")
            end = pos + _FRAME.size + length
            if end > len(buffer):
                break
            payload = buffer[pos + _FRAME.size : end]
            if crc32(payload) != crc:
                raise SnapshotFormatError(f"the record at offset {self.offset} fails its checksum (damaged)")
            if payload[8] == _TRAILER:
                self._summary = self._check_trailer(payload)
            else:
                items.append(self._decode_record(payload))
                self._digest.update(buffer[pos:end])
            pos = end
            self.offset += _FRAME.size + length
        self._buffer = buffer[pos:]
        return items

    def finish(self) -> SnapshotSummary:
        """The summary of the whole snapshot; raises unless it ended with its trailer, and nothing after it."""
        if self.header is None:
            raise SnapshotFormatError(
                f"the file is {len(self._buffer)} bytes, shorter than the {HEADER_SIZE}-byte snapshot header"
            )
        if self._buffer:
            if self._summary is not None:
                raise SnapshotFormatError(f"{len(self._buffer)} bytes after the trailer at offset {self.offset}")
            raise SnapshotFormatError(
                f"truncated: it ends inside the record at offset {self.offset} ({len(self._buffer)} bytes of it)"
            )
        if self._summary is None:
            raise SnapshotFormatError(f"truncated: it ends at offset {self.offset}, before its trailer")
        return self._summary

    def _check_trailer(self, payload: bytes) -> SnapshotSummary:
        header = self.header
        if header is None:  # pragma: no cover - set before any record
            raise RuntimeError("no header")
        revision = _PAYLOAD.unpack_from(payload)[0]
        if len(payload) != _TRAILER_PAYLOAD or revision != header.revision:
            raise SnapshotFormatError(f"the trailer at offset {self.offset} is malformed")
        counts = list(_COUNTS.unpack_from(payload, _PAYLOAD.size))
        if counts != self._counts:
            raise SnapshotFormatError(
                f"the trailer counts {counts[0]} keys, {counts[1]} leases and {counts[2]} tokens, "
                f"but the file holds {self._counts[0]}, {self._counts[1]} and {self._counts[2]}"
            )
        digest = self._digest.digest()
        if not hmac.compare_digest(payload[-_DIGEST_SIZE:], digest):
            raise SnapshotFormatError("the SHA-256 digest in the trailer does not match the file's contents (damaged)")
        size = self.offset + _FRAME.size + len(payload)
        keys, leases, tokens = counts
        return SnapshotSummary(
            header.version, header.revision, header.taken_at, keys, leases, tokens, size, digest.hex()
        )

    def _decode_record(self, payload: bytes) -> Item:
        header = self.header
        if header is None:  # pragma: no cover - set before any record
            raise RuntimeError("no header")
        sequence, kind, length = _PAYLOAD.unpack_from(payload)
        pos = _PAYLOAD.size
        if sequence < 1 or sequence > header.revision:
            raise SnapshotFormatError(
                f"the record at offset {self.offset} has revision {sequence}, "
                f"not in 1..{header.revision} (the snapshot's revision)"
            )
        try:
            if kind in (_ENTRY, _EXPIRING_ENTRY):
                create_revision, version = _REVISIONS.unpack_from(payload, pos)
                pos += _REVISIONS.size
                deadline = lease = 0
                if kind == _EXPIRING_ENTRY:
                    deadline, lease = _PAIR.unpack_from(payload, pos)
                    pos += _PAIR.size
                if not 1 <= create_revision <= sequence or version < 1 or pos + length > len(payload):
                    raise ValueError("inconsistent revisions or key length")
                key = payload[pos : pos + length].decode("utf-8")
                self._counts[0] += 1
                return KeyRecord(key, payload[pos + length :], create_revision, sequence, version, deadline, lease)
            if kind in (_LEASE_ENTRY, _OWNED_LEASE_ENTRY):
                ttl, deadline = _PAIR.unpack_from(payload, pos)
                owner = payload[pos + _PAIR.size :]
                if len(owner) != length or (kind == _LEASE_ENTRY and length):
                    raise ValueError("owner length")
                self._counts[1] += 1
                return LeaseRecord(sequence, ttl, deadline, owner.decode("utf-8"))
            if kind == _TOKEN_ENTRY:
                if pos + length > len(payload):
                    raise ValueError("id length")
                self._counts[2] += 1
                return TokenEntry(payload[pos : pos + length].decode("utf-8"), payload[pos + length :], sequence)
        except (struct.error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise SnapshotFormatError(f"the record at offset {self.offset} is malformed ({exc})") from None
        raise SnapshotFormatError(f"the record at offset {self.offset} is of kind {kind}, which no snapshot holds")


def _decode_header(data: bytes) -> SnapshotHeader:
    magic, version, _reserved, revision, taken_at = _HEADER.unpack_from(data)
    if magic != MAGIC:
        if magic.startswith(b"TUCOLOG"):
            raise SnapshotFormatError("this is a tuco log file, not a snapshot")
        raise SnapshotFormatError(f"not a tuco snapshot (magic {magic!r})")
    if version != SNAPSHOT_VERSION:
        raise SnapshotFormatError(
            f"snapshot format version {version} is not supported (this build reads version {SNAPSHOT_VERSION})"
        )
    return SnapshotHeader(version, revision, taken_at)
