"""The binary transaction log format, as pure functions over bytes.

A log is a 24-byte header followed by records::

    header  = magic "TUCOLOG\\0" (8) | format version u32 | reserved u32 | first sequence u64  (little-endian)
    record  = payload length u32 | CRC-32 of payload u32 | payload
    payload = sequence u64 | event type u8 | key length u32 | key (UTF-8) | value
    entry   = sequence u64 | 3 u8 | key length u32 | create revision u64 | version u64 | key (UTF-8) | value

Length framing makes any key and value round-trip exactly (the book's
line-and-whitespace format could not), the CRC tells a torn or damaged record
from a good one, and the fixed overhead is 21 bytes per event. Ordinary records
(PUT, DELETE) carry the header's first sequence and then exactly one more each;
a gap is corruption. A header with no record after it ends at first sequence - 1.

Version 2 adds the compacted section a compaction writes: right after the
header, one *entry* per live key, carrying the key's value, create revision and
version, with its mod revision as the record's sequence, in increasing order
and below the header's first sequence (so a key keeps its revisions, and its
ETag, across a compaction). The first ordinary record ends the section.
Version 1 files (no entries) are read as they always were, and a log that was
never compacted is still written as version 1, so an older build reads it.

Expiring keys and leases add record kinds, never a change to the ones above,
so a PUT without a deadline is encoded exactly as before::

    expiring put  = sequence u64 | 7 u8 | key length u32 | deadline u64 | lease u64 | key | value
    lease record  = sequence u64 | 4 grant, 5 keepalive, 6 revoke u8 | 0 u32 | lease u64 | ttl u64 | deadline u64
    expiring entry = sequence u64 | 8 u8 | key length u32 | create revision u64 | version u64
                     | deadline u64 | lease u64 | key | value                      (compacted section)
    lease entry   = sequence (the lease id) u64 | 9 u8 | 0 u32 | ttl u64 | deadline u64  (compacted section)

A lease granted by a principal (authentication on) carries its owner, the
token id or certificate identity, in two more kinds; a grant without one is
written as before, so a log of a server without authentication stays readable
by older builds (which report these kinds as corruption, never misread them)::

    owned grant   = sequence u64 | 13 u8 | owner length u32 | lease u64 | ttl u64 | deadline u64 | owner (UTF-8)
    owned lease entry = sequence (the lease id) u64 | 14 u8 | owner length u32 | ttl u64 | deadline u64 | owner

Tokens (users and permissions) add three more kinds; a token's id is the key,
its record (JSON: grants, expiry, the SHA-256 of its secret, never the secret) the value::

    token record  = sequence u64 | 10 create, 11 revoke u8 | id length u32 | id | record (create only)
    token entry   = sequence (its creation) u64 | 12 u8 | id length u32 | id | record   (compacted section)

Deadlines are absolute Unix milliseconds (0: none), so a replay, a restart
or a compaction never moves one. A build without expiry reports these kinds
as unknown (corruption), never misreads them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from isal.isal_zlib import crc32 as _large_crc32

from tuco.core.events import Event, EventType, Lifetime
from tuco.errors import LogFormatError

__all__ = [
    "ENTRY_OVERHEAD",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_KEY_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_VALUE_BYTES",
    "PLAIN_VERSION",
    "RECORD_OVERHEAD",
    "SPLIT_VALUE_BYTES",
    "DecodeFailure",
    "LogHeader",
    "RecordDecoder",
    "RecordHead",
    "decode_header",
    "encode_entry",
    "encode_event",
    "encode_header",
    "encode_lease_entry",
    "encode_record",
    "encode_records",
    "encode_token_entry",
    "record_heads",
]

MAGIC = b"TUCOLOG\x00"
FORMAT_VERSION = 2
"""The newest format this build reads and writes (with a compacted section); it also reads version 1."""
PLAIN_VERSION = 1
"""The version of a log without a compacted section: readable by every build."""
_HEADER = struct.Struct("<8sIIQ")
HEADER_SIZE = _HEADER.size
_FRAME = struct.Struct("<II")
_LENGTH = struct.Struct("<I")
_PAYLOAD = struct.Struct("<QBI")
RECORD_OVERHEAD = _FRAME.size + _PAYLOAD.size
MAX_KEY_BYTES = 1 << 16
"""The largest key any setting allows (``TUCO_MAX_KEY_BYTES`` is bounded by it)."""
MAX_VALUE_BYTES = 1 << 30
"""The largest value any setting allows (``TUCO_MAX_VALUE_BYTES`` is bounded by it)."""
MAX_PAYLOAD_BYTES = _PAYLOAD.size + 16 + MAX_KEY_BYTES + MAX_VALUE_BYTES
"""The largest payload the format allows (an expiring PUT's, 16 bytes over a PUT's): a longer one is damage."""
_HEAD = struct.Struct("<IIQBI")  # frame and payload head together: one unpack per record
_HEAD_SIZE = _HEAD.size
_MIN_PAYLOAD = _PAYLOAD.size
_ENTRY = 3  # the type code of a compacted entry: never an EventType, only ever in a version 2 header's section
_REVISIONS = struct.Struct("<QQ")  # an entry's create revision and version, after the payload head
_ENTRY_HEAD_SIZE = _HEAD_SIZE + _REVISIONS.size
_MIN_ENTRY = _PAYLOAD.size + _REVISIONS.size
_PAIR = struct.Struct("<QQ")  # an expiring put's deadline and lease; a lease entry's ttl and deadline
_LEASE = struct.Struct("<QQQ")  # a lease record's lease, ttl and deadline
_EXPIRING_PUT = 7
_EXPIRING_ENTRY = 8
_LEASE_ENTRY = 9
_TOKEN_CREATE = 10
_TOKEN_REVOKE = 11
_TOKEN_ENTRY = 12
_OWNED_GRANT = 13
_OWNED_LEASE_ENTRY = 14
_TOKEN_CODES = {_TOKEN_CREATE: EventType.TOKEN_CREATE, _TOKEN_REVOKE: EventType.TOKEN_REVOKE}
_CODE_OF_TOKEN = {EventType.TOKEN_CREATE: _TOKEN_CREATE, EventType.TOKEN_REVOKE: _TOKEN_REVOKE}
_MAX_ENTRY = MAX_PAYLOAD_BYTES + _REVISIONS.size
ENTRY_OVERHEAD = _FRAME.size + _MIN_ENTRY
_TYPE_BY_CODE: tuple[EventType | None, ...] = (None, EventType.PUT, EventType.DELETE)  # the fast loop's kinds
_LEASE_CODES = {t.value: t for t in (EventType.LEASE_GRANT, EventType.LEASE_KEEPALIVE, EventType.LEASE_REVOKE)}
# Record codes are not EventType numbers from 7 on (7 and 8 were taken by expiring kinds first).
_RECORD_CODES = frozenset((EventType.PUT, EventType.DELETE, *_LEASE_CODES, _EXPIRING_PUT, *_TOKEN_CODES, _OWNED_GRANT))
_ENTRY_CODES = frozenset((_ENTRY, _EXPIRING_ENTRY, _LEASE_ENTRY, _TOKEN_ENTRY, _OWNED_LEASE_ENTRY))


class LogHeader(NamedTuple):
    """What a log file's header says."""

    version: int
    first_sequence: int


def encode_header(*, first_sequence: int = 1, version: int = PLAIN_VERSION) -> bytes:
    """The bytes every log file starts with; ``first_sequence`` is the sequence of its first ordinary record.

    ``version`` is :data:`FORMAT_VERSION` for a file with a compacted section, else 1.
    """
    return _HEADER.pack(MAGIC, version, 0, first_sequence)


def decode_header(data: bytes) -> LogHeader:
    """Return the header at the start of ``data``; raise :class:`LogFormatError` if it is not ours."""
    if len(data) < HEADER_SIZE:
        raise LogFormatError(f"file is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, _reserved, first_sequence = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise LogFormatError(f"not a tuco log (magic {magic!r})")
    if not PLAIN_VERSION <= version <= FORMAT_VERSION:
        raise LogFormatError(
            f"log format version {version} is not supported (this build reads {PLAIN_VERSION} to {FORMAT_VERSION})"
        )
    if first_sequence < 1:
        raise LogFormatError("the header's first sequence is 0; sequences start at 1")
    return LogHeader(int(version), int(first_sequence))


def encode_record(sequence: int, type: EventType, key: str, value: bytes = b"") -> bytes:
    """Frame one event as a record."""
    key_bytes = key.encode("utf-8")
    payload = _PAYLOAD.pack(sequence, type, len(key_bytes)) + key_bytes + value
    return _FRAME.pack(len(payload), _checksum(payload)) + payload


def _checksum(data: bytes) -> int:
    """zlib's CRC-32 of ``data``: ISA-L's (the same function, many times faster) for large buffers.

    For small ones zlib's is as fast, and a call cheaper.
    """
    return zlib.crc32(data) if len(data) < SPLIT_VALUE_BYTES else _large_crc32(data)


SPLIT_VALUE_BYTES = 16 * 1024
"""Values at least this big stay in their own buffer in :func:`encode_records`: written as they are, never copied."""


def encode_records(events: Sequence[Event]) -> tuple[list[bytes], bool]:
    """Frame plain PUT and DELETE events (no deadline) as :func:`encode_record` does, as buffers to write in order.

    A record's bytes are one buffer, except that a value of :data:`SPLIT_VALUE_BYTES`
    or more is a buffer of its own after its record's head (the checksum runs
    over both without joining them): a large value reaches the disk without
    being copied. Returns the buffers and whether any value was split off.
    """
    parts: list[bytes] = []
    append = parts.append
    pack_payload = _PAYLOAD.pack
    pack_frame = _FRAME.pack
    crc32 = zlib.crc32
    split = False
    for event in events:
        key_bytes = event[2].encode("utf-8")
        value = event[3]
        head = pack_payload(event[0], event[1], len(key_bytes)) + key_bytes
        if len(value) < SPLIT_VALUE_BYTES:
            payload = head + value
            append(pack_frame(len(payload), crc32(payload)) + payload)
        else:
            append(pack_frame(len(head) + len(value), _large_crc32(value, crc32(head))) + head)
            append(value)
            split = True
    return parts, split


def encode_event(event: Event) -> bytes:
    """Frame any event: PUT and DELETE without a deadline exactly as :func:`encode_record` does."""
    sequence, type, key, value, _, _, lifetime = event
    deadline, lease, ttl = lifetime if lifetime is not None else (0, 0, 0)
    if type is EventType.PUT:
        if not (deadline or lease):
            return encode_record(sequence, type, key, value)
        key_bytes = key.encode("utf-8")
        payload = (
            _PAYLOAD.pack(sequence, _EXPIRING_PUT, len(key_bytes)) + _PAIR.pack(deadline, lease) + key_bytes + value
        )
    elif type is EventType.DELETE:
        return encode_record(sequence, type, key)
    elif type in _CODE_OF_TOKEN:
        key_bytes = key.encode("utf-8")
        payload = _PAYLOAD.pack(sequence, _CODE_OF_TOKEN[type], len(key_bytes)) + key_bytes + value
    elif type is EventType.LEASE_GRANT and value:  # the grant's owner
        payload = _PAYLOAD.pack(sequence, _OWNED_GRANT, len(value)) + _LEASE.pack(lease, ttl, deadline) + value
    else:
        payload = _PAYLOAD.pack(sequence, type, 0) + _LEASE.pack(lease, ttl, deadline)
    return _FRAME.pack(len(payload), _checksum(payload)) + payload


def encode_lease_entry(id: int, ttl: int, deadline: int, owner: str = "") -> bytes:
    """Frame a live lease of a compacted section (its id, the sequence of its grant, is the record's sequence)."""
    if owner:
        owner_bytes = owner.encode("utf-8")
        payload = _PAYLOAD.pack(id, _OWNED_LEASE_ENTRY, len(owner_bytes)) + _PAIR.pack(ttl, deadline) + owner_bytes
    else:
        payload = _PAYLOAD.pack(id, _LEASE_ENTRY, 0) + _PAIR.pack(ttl, deadline)
    return _FRAME.pack(len(payload), _checksum(payload)) + payload


def encode_token_entry(id: str, record: bytes, created: int) -> bytes:
    """Frame a live token of a compacted section (the sequence of its creation is the record's sequence)."""
    id_bytes = id.encode("utf-8")
    payload = _PAYLOAD.pack(created, _TOKEN_ENTRY, len(id_bytes)) + id_bytes + record
    return _FRAME.pack(len(payload), _checksum(payload)) + payload


def encode_entry(
    key: str, value: bytes, create_revision: int, mod_revision: int, version: int, deadline: int = 0, lease: int = 0
) -> bytes:
    """Frame one live key of a compacted section, with its revisions (its mod revision is the record's sequence)."""
    key_bytes = key.encode("utf-8")
    if deadline or lease:
        head = _PAYLOAD.pack(mod_revision, _EXPIRING_ENTRY, len(key_bytes)) + _REVISIONS.pack(create_revision, version)
        payload = head + _PAIR.pack(deadline, lease) + key_bytes + value
        return _FRAME.pack(len(payload), _checksum(payload)) + payload
    payload = (
        _PAYLOAD.pack(mod_revision, _ENTRY, len(key_bytes))
        + _REVISIONS.pack(create_revision, version)
        + key_bytes
        + value
    )
    return _FRAME.pack(len(payload), _checksum(payload)) + payload


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why decoding stopped before the end of the data, and where (absolute offsets).

    ``search_from`` is where a valid record would show that the log is corrupt
    rather than torn: just past the bad record's declared span when its length
    is plausible (the span itself may hold any bytes a client sent, records
    included, so it is never searched), the next byte when the length itself is
    impossible. It is ``None`` for a whole, checksummed record that is wrong
    (out of sequence, unknown type...): a torn write never has a valid checksum,
    so that is corruption by itself.
    """

    offset: int
    reason: str
    search_from: int | None


class RecordDecoder:
    """Turns a stream of log bytes into events, fed in chunks of any size.

    ``offset`` is the absolute position just after the last good record, which
    is where a torn log would be cut. The first ordinary record must carry
    ``first_sequence`` (the header's), each later one the next sequence. With
    ``compacted`` (a version 2 header), entries may come first, each with a
    higher sequence than the last and below ``first_sequence``; they become
    PUT events carrying their create revision and version. Decoding stops at
    the first bad record and records why in ``failure``; the caller decides
    whether that is a torn tail or corruption. A record is valid by its framing
    and checksum alone, up to the format's :data:`MAX_PAYLOAD_BYTES`: never by
    today's request limits, which apply to new requests only.
    """

    __slots__ = ("_buffer", "_entries_below", "_last_entry", "entries", "failure", "next_sequence", "offset")

    def __init__(self, *, first_sequence: int = 1, start_offset: int = HEADER_SIZE, compacted: bool = False) -> None:
        self._buffer = b""
        self.offset = start_offset
        self.next_sequence = first_sequence
        self.failure: DecodeFailure | None = None
        self._entries_below = first_sequence if compacted else 0  # 0 once past the compacted section
        self._last_entry = 0
        self.entries = 0
        """How many compacted entries were decoded."""

    @property
    def pending_bytes(self) -> int:
        """Bytes fed but not yet part of a complete record."""
        return len(self._buffer)

    @property
    def wanted_bytes(self) -> int:
        """Bytes still missing from the pending record, when its length is known (else 0).

        A reader feeds at least this much next, so a large record is joined once, not chunk by chunk.
        """
        buffer = self._buffer
        if len(buffer) < _FRAME.size:
            return 0
        length: int = _LENGTH.unpack_from(buffer)[0]
        return max(0, _FRAME.size + min(length, _MAX_ENTRY) - len(buffer))

    def feed(self, data: bytes) -> list[Event]:
        """Decode every complete record in what has been fed so far.

        This loop is the start-up time of the service, so it is written for
        speed: one ``unpack_from`` per ordinary record, bytes slicing, and
        events built with ``tuple.__new__`` (skipping the NamedTuple's Python
        ``__new__``). Compacted entries, one per live key, have a loop of their own.
        """
        if self.failure is not None:
            return []
        buf = self._buffer + data if self._buffer else data
        events: list[Event] = []
        pos = 0
        failure = None
        search_from: int | None = None
        if self._entries_below:
            pos, failure, search_from = self._decode_entries(buf, events)
        if failure is None and not self._entries_below:
            size = len(buf)
            append = events.append
            unpack_head = _HEAD.unpack_from
            crc32 = zlib.crc32
            new = tuple.__new__
            types = _TYPE_BY_CODE
            known_codes = len(types)
            max_length = MAX_PAYLOAD_BYTES
            sequence = self.next_sequence
            while size - pos >= _HEAD_SIZE:
                length, checksum, seq, code, key_length = unpack_head(buf, pos)
                if length < _MIN_PAYLOAD or length > max_length:
                    failure = f"record length {length} is impossible"
                    search_from = pos + 1
                    break
                start = pos + 8
                end = start + length
                if end > size:
                    break
                if crc32(buf[start:end]) != checksum:
                    failure = "checksum mismatch"
                    search_from = end
                    break
                if code > 2:  # an expiring PUT or a lease record: rare, decoded apart
                    decoded = _decode_extended(buf, pos, end, seq, code, key_length)
                    if isinstance(decoded, str):
                        failure = decoded
                        break
                    if seq != sequence:
                        failure = f"sequence {seq} where {sequence} was expected"
                        break
                    append(decoded)
                    sequence += 1
                    pos = end
                    continue
                key_end = pos + _HEAD_SIZE + key_length
                if key_end > end or code >= known_codes or (event_type := types[code]) is None:
                    failure = f"malformed record (type {code}, key length {key_length})"
                    break
                if seq != sequence:
                    failure = f"sequence {seq} where {sequence} was expected"
                    break
                try:
                    key = buf[pos + _HEAD_SIZE : key_end].decode()
                except UnicodeDecodeError:
                    failure = "key is not valid UTF-8"
                    break
                append(new(Event, (seq, event_type, key, buf[key_end:end], 0, 0, None)))
                sequence += 1
                pos = end
            self.next_sequence = sequence
        base = self.offset
        self.offset += pos
        if failure is not None:
            self.failure = DecodeFailure(self.offset, failure, None if search_from is None else base + search_from)
            self._buffer = b""
        else:
            self._buffer = buf[pos:]
        return events

    def _decode_entries(self, buf: bytes, events: list[Event]) -> tuple[int, str | None, int | None]:
        """Decode the compacted entries at the start of ``buf``; return where they end, and why they stopped.

        The section ends at the first record of another type (left to the
        ordinary loop, which judges it), so a failure here is always an entry's.
        """
        size = len(buf)
        pos = 0
        below = self._entries_below
        last = self._last_entry
        unpack_head = _HEAD.unpack_from
        unpack_revisions = _REVISIONS.unpack_from
        new = tuple.__new__
        put = EventType.PUT
        failure = None
        search_from: int | None = None
        count = 0
        while size - pos >= _HEAD_SIZE:
            length, checksum, seq, code, key_length = unpack_head(buf, pos)
            if code not in _ENTRY_CODES:
                self._entries_below = 0
                break
            if code == _TOKEN_ENTRY:
                decoded = _decode_token_entry(buf, pos, size, length, checksum, seq, key_length, last, below)
                if decoded is None:
                    break  # incomplete
                if not isinstance(decoded, Event):
                    failure, search_from = decoded
                    break
                events.append(decoded)
                count += 1
                last = seq
                pos += 8 + length
                continue
            if length < _MIN_ENTRY or length > _MAX_ENTRY:
                failure = f"record length {length} is impossible"
                search_from = pos + 1
                break
            end = pos + 8 + length
            if end > size:
                break
            if zlib.crc32(buf[pos + 8 : end]) != checksum:
                failure = "checksum mismatch"
                search_from = end
                break
            if code in (_LEASE_ENTRY, _OWNED_LEASE_ENTRY):
                owned = code == _OWNED_LEASE_ENTRY
                if length != _MIN_PAYLOAD + _PAIR.size + key_length or owned != (key_length > 0):
                    failure = f"malformed lease entry (length {length})"
                    break
                if not last < seq < below:
                    failure = f"entry with sequence {seq} after {last}, where {last + 1} to {below - 1} may follow"
                    break
                ttl, deadline = _PAIR.unpack_from(buf, pos + _HEAD_SIZE)
                owner = buf[pos + _HEAD_SIZE + _PAIR.size : end]
                events.append(new(Event, (seq, EventType.LEASE_GRANT, "", owner, 0, 0, Lifetime(deadline, seq, ttl))))
                count += 1
                last = seq
                pos = end
                continue
            create_revision, version = unpack_revisions(buf, pos + _HEAD_SIZE)
            key_start = pos + _ENTRY_HEAD_SIZE
            lifetime = None
            if code == _EXPIRING_ENTRY:
                lifetime = Lifetime(*_PAIR.unpack_from(buf, key_start))
                key_start += _PAIR.size
            key_end = key_start + key_length
            if key_end > end:
                failure = f"malformed entry (key length {key_length})"
                break
            if not last < seq < below:
                failure = f"entry with sequence {seq} after {last}, where {last + 1} to {below - 1} may follow"
                break
            if not 1 <= create_revision <= seq or not 1 <= version <= seq - create_revision + 1:
                failure = f"entry {seq} with create revision {create_revision} and version {version} is impossible"
                break
            try:
                key = buf[key_start:key_end].decode()
            except UnicodeDecodeError:
                failure = "key is not valid UTF-8"
                break
            events.append(new(Event, (seq, put, key, buf[key_end:end], create_revision, version, lifetime)))
            count += 1
            last = seq
            pos = end
        self._last_entry = last
        self.entries += count
        return pos, failure, search_from


def _decode_token_entry(
    buf: bytes, pos: int, size: int, length: int, checksum: int, seq: int, key_length: int, last: int, below: int
) -> Event | tuple[str, int | None] | None:
    """A compacted token entry; None if incomplete, ``(why, search_from)`` if bad."""
    if length < _MIN_PAYLOAD or length > _MAX_ENTRY:
        return f"record length {length} is impossible", pos + 1
    end = pos + 8 + length
    if end > size:
        return None
    if zlib.crc32(buf[pos + 8 : end]) != checksum:
        return "checksum mismatch", end
    id_end = pos + _HEAD_SIZE + key_length
    if id_end > end:
        return f"malformed token entry (id length {key_length})", None
    if not last < seq < below:
        return f"entry with sequence {seq} after {last}, where {last + 1} to {below - 1} may follow", None
    try:
        id = buf[pos + _HEAD_SIZE : id_end].decode()
    except UnicodeDecodeError:
        return "token id is not valid UTF-8", None
    return Event(seq, EventType.TOKEN_CREATE, id, buf[id_end:end])


def _decode_extended(buf: bytes, pos: int, end: int, seq: int, code: int, key_length: int) -> Event | str:
    """An expiring PUT, a lease or a token record whose frame and checksum are good; a string says why it is bad."""
    body = pos + _HEAD_SIZE
    token_type = _TOKEN_CODES.get(code)
    if token_type is not None:
        key_end = body + key_length
        if key_end > end or (token_type is EventType.TOKEN_REVOKE and key_end != end):
            return f"malformed record (type {code}, key length {key_length})"
        try:
            id = buf[body:key_end].decode()
        except UnicodeDecodeError:
            return "token id is not valid UTF-8"
        return Event(seq, token_type, id, buf[key_end:end])
    if code == _EXPIRING_PUT:
        key_start = body + _PAIR.size
        key_end = key_start + key_length
        if key_end > end:
            return f"malformed record (type {code}, key length {key_length})"
        deadline, lease = _PAIR.unpack_from(buf, body)
        try:
            key = buf[key_start:key_end].decode()
        except UnicodeDecodeError:
            return "key is not valid UTF-8"
        return Event(seq, EventType.PUT, key, buf[key_end:end], 0, 0, Lifetime(deadline, lease))
    if code == _OWNED_GRANT:
        if not key_length or end - body != _LEASE.size + key_length:
            return f"malformed record (type {code}, key length {key_length})"
        lease, ttl, deadline = _LEASE.unpack_from(buf, body)
        return Event(
            seq, EventType.LEASE_GRANT, "", buf[body + _LEASE.size : end], 0, 0, Lifetime(deadline, lease, ttl)
        )
    lease_type = _LEASE_CODES.get(code)
    if lease_type is None or key_length or end - body != _LEASE.size:
        return f"malformed record (type {code}, key length {key_length})"
    lease, ttl, deadline = _LEASE.unpack_from(buf, body)
    return Event(seq, lease_type, "", b"", 0, 0, Lifetime(deadline, lease, ttl))


class RecordHead(NamedTuple):
    """Where a record could start: its position and the length and checksum its frame declares."""

    position: int
    length: int
    checksum: int


def record_heads(
    data: bytes, sequences: range, *, stop: int | None = None, compacted: bool = False
) -> Iterator[RecordHead]:
    """Yield every position before ``stop`` in ``data`` where a record of this log could start.

    A candidate needs a plausible length, a known type (an entry too, in a
    ``compacted`` log), a key that fits and a sequence in ``sequences`` (what
    the records after a damaged one can carry), so random bytes almost never
    qualify; the caller checks the checksum over the declared span, which may
    run past ``data``.
    """
    unpack_head = _HEAD.unpack_from
    known = _RECORD_CODES
    last = len(data) - _HEAD_SIZE
    if stop is not None:
        last = min(last, stop - 1)
    lowest, highest = sequences.start, sequences.stop
    for pos in range(last + 1):
        length, checksum, seq, code, key_length = unpack_head(data, pos)
        if lowest <= seq < highest and (
            (code in known and _MIN_PAYLOAD <= length <= MAX_PAYLOAD_BYTES and key_length <= length - _MIN_PAYLOAD)
            or (
                compacted
                and code in _ENTRY_CODES
                and _MIN_ENTRY <= length <= _MAX_ENTRY
                and key_length <= length - _MIN_ENTRY
            )
        ):
            yield RecordHead(pos, length, checksum)
