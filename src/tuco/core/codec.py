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

A transaction is one record, whatever it writes: its checksum covers all of its
writes, so a torn tail never applies part of one. Its writes are listed as
:func:`tuco.core.txn.encode_writes` lays them out, already decided (the keys a
range delete found, the deadlines a ttl gave)::

    transaction   = sequence u64 | 15 u8 | 0 u32 | writes

The keys a transaction writes share its revision, so in a compacted section an
entry may carry the sequence of the entry before it: it is then written with a
kind of its own (16 for an entry, 17 for an expiring entry, laid out as 3 and 8),
so every other entry still must rise, and a build without transactions reports
it as unknown, never misreads it.

Who made a change, when and why (:mod:`tuco.core.origin`) wraps the record of
the change, whatever its kind, in one more kind; a record without an origin is
written exactly as before, and a build before origins reports this kind as
unknown (corruption), never misreads it. The inner payload repeats the sequence::

    attributed    = sequence u64 | 18 u8 | by length u32 | at u64 | reason u8 | by (UTF-8) | inner payload

Deadlines are absolute Unix milliseconds (0: none), so a replay, a restart
or a compaction never moves one. A build without expiry reports these kinds
as unknown (corruption), never misreads them.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence

from tuco.core._decoder import DecodeFailure, RecordDecoder, RecordHead, record_heads
from tuco.core._format import (
    _ATTRIBUTED,
    _CODE_OF_TOKEN,
    _ENTRY,
    _EXPIRING_ENTRY,
    _EXPIRING_PUT,
    _FRAME,
    _LEASE,
    _LEASE_ENTRY,
    _ORIGIN,
    _OWNED_GRANT,
    _OWNED_LEASE_ENTRY,
    _PAIR,
    _PAYLOAD,
    _REVISIONS,
    _SHARED_ENTRY,
    _SHARED_EXPIRING_ENTRY,
    _TOKEN_ENTRY,
    _TXN,
    ENTRY_OVERHEAD,
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    MAX_KEY_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_VALUE_BYTES,
    PLAIN_VERSION,
    RECORD_OVERHEAD,
    SPLIT_VALUE_BYTES,
    LogHeader,
    crc32,
    decode_header,
    encode_header,
)
from tuco.core.events import Event, EventType
from tuco.core.origin import Origin

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


_native_encode: Callable[[Sequence[Event], Callable[[bytes, int], int], int], tuple[list[bytes], bool]] | None
try:  # the compiled build's C loop for a batch's records (tuco.core._native.encode_plain)
    from tuco.core._native import encode_plain as _native_encode
except ImportError:
    _native_encode = None


def encode_record(sequence: int, type: EventType, key: str, value: bytes = b"") -> bytes:
    """Frame one event as a record."""
    key_bytes = key.encode("utf-8")
    payload = _PAYLOAD.pack(sequence, type, len(key_bytes)) + key_bytes + value
    return _FRAME.pack(len(payload), crc32(payload)) + payload


def encode_records(events: Sequence[Event]) -> tuple[list[bytes], bool]:
    """Frame PUT and DELETE events (no deadline) as :func:`encode_event` does, as buffers to write in order.

    A record's bytes are one buffer, except that a value of :data:`SPLIT_VALUE_BYTES`
    or more is a buffer of its own after its record's head (the checksum runs
    over both without joining them): a large value reaches the disk without
    being copied. Returns the buffers and whether any value was split off. The compiled build does it in C,
    to the same bytes (``tests/core/test_native.py``).
    """
    if _native_encode is not None:
        return _native_encode(events, crc32, SPLIT_VALUE_BYTES)
    parts: list[bytes] = []
    append = parts.append
    pack_payload = _PAYLOAD.pack
    pack_frame = _FRAME.pack
    split = False
    last_origin = None
    for event in events:
        key_bytes = event[2].encode("utf-8")
        value = event[3]
        origin = event[7]
        if origin is None:
            head = pack_payload(event[0], event[1], len(key_bytes)) + key_bytes
        else:  # wrapped: the attributed head, then the record's own payload head, in one pack
            if origin is not last_origin:  # a batch's writes mostly share one: its part prepared once
                last_origin = origin
                by = origin[0].encode("utf-8")
                pack_wrapped = _wrapped(len(by)).pack
                by_length, at, reason = len(by), origin[1], origin[2]
            sequence = event[0]
            head = (
                pack_wrapped(sequence, _ATTRIBUTED, by_length, at, reason, by, sequence, event[1], len(key_bytes))
                + key_bytes
            )
        if len(value) < SPLIT_VALUE_BYTES:
            payload = head + value
            append(pack_frame(len(payload), crc32(payload)) + payload)
        else:
            append(pack_frame(len(head) + len(value), crc32(value, crc32(head))) + head)
            append(value)
            split = True
    return parts, split


@functools.lru_cache(maxsize=64)
def _wrapped(by_length: int) -> struct.Struct:
    """An attributed record's payload head, origin, principal of ``by_length`` bytes and inner payload head."""
    return struct.Struct(f"{_PAYLOAD.format}{_ORIGIN.format[1:]}{by_length}s{_PAYLOAD.format[1:]}")


def encode_event(event: Event) -> bytes:
    """Frame any event: PUT and DELETE without a deadline or an origin exactly as :func:`encode_record` does."""
    if event.origin is not None:
        return _attributed(event, event.origin)
    sequence, type, key, value, _, _, lifetime, _ = event
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
    elif type is EventType.TXN:
        payload = _PAYLOAD.pack(sequence, _TXN, 0) + value
    elif type in _CODE_OF_TOKEN:
        key_bytes = key.encode("utf-8")
        payload = _PAYLOAD.pack(sequence, _CODE_OF_TOKEN[type], len(key_bytes)) + key_bytes + value
    elif type is EventType.LEASE_GRANT and value:  # the grant's owner
        payload = _PAYLOAD.pack(sequence, _OWNED_GRANT, len(value)) + _LEASE.pack(lease, ttl, deadline) + value
    else:
        payload = _PAYLOAD.pack(sequence, type, 0) + _LEASE.pack(lease, ttl, deadline)
    return _FRAME.pack(len(payload), crc32(payload)) + payload


def _attributed(event: Event, origin: Origin) -> bytes:
    """Frame an event with its origin: the event's own record's payload, wrapped."""
    inner = encode_event(tuple.__new__(Event, (*event[:7], None)))[_FRAME.size :]
    name, at, reason = origin
    by = name.encode("utf-8")
    payload = _PAYLOAD.pack(event.sequence, _ATTRIBUTED, len(by)) + _ORIGIN.pack(at, reason) + by + inner
    return _FRAME.pack(len(payload), crc32(payload)) + payload


def encode_lease_entry(id: int, ttl: int, deadline: int, owner: str = "") -> bytes:
    """Frame a live lease of a compacted section (its id, the sequence of its grant, is the record's sequence)."""
    if owner:
        owner_bytes = owner.encode("utf-8")
        payload = _PAYLOAD.pack(id, _OWNED_LEASE_ENTRY, len(owner_bytes)) + _PAIR.pack(ttl, deadline) + owner_bytes
    else:
        payload = _PAYLOAD.pack(id, _LEASE_ENTRY, 0) + _PAIR.pack(ttl, deadline)
    return _FRAME.pack(len(payload), crc32(payload)) + payload


def encode_token_entry(id: str, record: bytes, created: int) -> bytes:
    """Frame a live token of a compacted section (the sequence of its creation is the record's sequence)."""
    id_bytes = id.encode("utf-8")
    payload = _PAYLOAD.pack(created, _TOKEN_ENTRY, len(id_bytes)) + id_bytes + record
    return _FRAME.pack(len(payload), crc32(payload)) + payload


def encode_entry(
    key: str,
    value: bytes,
    create_revision: int,
    mod_revision: int,
    version: int,
    deadline: int = 0,
    lease: int = 0,
    *,
    shared: bool = False,
) -> bytes:
    """Frame one live key of a compacted section, with its revisions (its mod revision is the record's sequence).

    ``shared``: the entry before it has the same mod revision (one transaction wrote both).
    """
    key_bytes = key.encode("utf-8")
    if deadline or lease:
        code = _SHARED_EXPIRING_ENTRY if shared else _EXPIRING_ENTRY
        head = _PAYLOAD.pack(mod_revision, code, len(key_bytes)) + _REVISIONS.pack(create_revision, version)
        payload = head + _PAIR.pack(deadline, lease) + key_bytes + value
        return _FRAME.pack(len(payload), crc32(payload)) + payload
    payload = (
        _PAYLOAD.pack(mod_revision, _SHARED_ENTRY if shared else _ENTRY, len(key_bytes))
        + _REVISIONS.pack(create_revision, version)
        + key_bytes
        + value
    )
    return _FRAME.pack(len(payload), crc32(payload)) + payload
