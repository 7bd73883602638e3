"""The binary transaction log format, as pure functions over bytes.

A log is a 24-byte header followed by records::

    header  = magic "TUCOLOG\\0" (8) | format version u32 | reserved u32 | first sequence u64  (little-endian)
    record  = payload length u32 | CRC-32 of payload u32 | payload
    payload = sequence u64 | event type u8 | key length u32 | key (UTF-8) | value

Length framing makes any key and value round-trip exactly (the book's
line-and-whitespace format could not), the CRC tells a torn or damaged record
from a good one, and the fixed overhead is 21 bytes per event. Sequences start
at the header's first sequence (1 for a new log; more for a compacted one, whose
rewritten history starts later) and increase by exactly one per record; a gap
is corruption. A header with no record after it ends at first sequence - 1.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from tuco.core.events import Event, EventType
from tuco.errors import LogFormatError

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "RECORD_OVERHEAD",
    "DecodeFailure",
    "LogHeader",
    "RecordDecoder",
    "decode_header",
    "encode_header",
    "encode_record",
    "find_valid_record",
]

MAGIC = b"TUCOLOG\x00"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIQ")
HEADER_SIZE = _HEADER.size
_FRAME = struct.Struct("<II")
_PAYLOAD = struct.Struct("<QBI")
RECORD_OVERHEAD = _FRAME.size + _PAYLOAD.size
_HEAD = struct.Struct("<IIQBI")  # frame and payload head together: one unpack per record
_HEAD_SIZE = _HEAD.size
_MIN_PAYLOAD = _PAYLOAD.size
_TYPES: dict[int, EventType] = {t.value: t for t in EventType}
_TYPE_BY_CODE: tuple[EventType | None, ...] = tuple(_TYPES.get(code) for code in range(max(_TYPES) + 1))


class LogHeader(NamedTuple):
    """What a log file's header says."""

    version: int
    first_sequence: int


def encode_header(*, first_sequence: int = 1, version: int = FORMAT_VERSION) -> bytes:
    """The bytes every log file starts with; ``first_sequence`` is the sequence of its first record."""
    return _HEADER.pack(MAGIC, version, 0, first_sequence)


def decode_header(data: bytes) -> LogHeader:
    """Return the header at the start of ``data``; raise :class:`LogFormatError` if it is not ours."""
    if len(data) < HEADER_SIZE:
        raise LogFormatError(f"file is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, _reserved, first_sequence = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise LogFormatError(f"not a tuco log (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise LogFormatError(f"log format version {version} is not supported (this build reads {FORMAT_VERSION})")
    if first_sequence < 1:
        raise LogFormatError("the header's first sequence is 0; sequences start at 1")
    return LogHeader(int(version), int(first_sequence))


def encode_record(sequence: int, type: EventType, key: str, value: bytes = b"") -> bytes:
    """Frame one event as a record."""
    key_bytes = key.encode("utf-8")
    payload = _PAYLOAD.pack(sequence, type, len(key_bytes)) + key_bytes + value
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    """Why decoding stopped before the end of the data, and where (absolute offset)."""

    offset: int
    reason: str


class RecordDecoder:
    """Turns a stream of log bytes into events, fed in chunks of any size.

    ``offset`` is the absolute position just after the last good record, which
    is where a torn log would be cut. The first record must carry
    ``first_sequence`` (the header's), each later one the next sequence.
    Decoding stops at the first bad record and records why in ``failure``;
    the caller decides whether that is a torn tail or corruption (see
    :func:`find_valid_record`).
    """

    __slots__ = ("_buffer", "failure", "max_record_bytes", "next_sequence", "offset")

    def __init__(
        self, *, first_sequence: int = 1, start_offset: int = HEADER_SIZE, max_record_bytes: int = 1 << 31
    ) -> None:
        self._buffer = b""
        self.offset = start_offset
        self.next_sequence = first_sequence
        self.max_record_bytes = max_record_bytes
        self.failure: DecodeFailure | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes fed but not yet part of a complete record."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Event]:
        """Decode every complete record in what has been fed so far.

        This loop is the start-up time of the service, so it is written for
        speed: one ``unpack_from`` per record, bytes slicing, and events built
        with ``tuple.__new__`` (skipping the NamedTuple's Python ``__new__``).
        """
        if self.failure is not None:
            return []
        buf = self._buffer + data if self._buffer else data
        size = len(buf)
        events: list[Event] = []
        append = events.append
        unpack_head = _HEAD.unpack_from
        crc32 = zlib.crc32
        new = tuple.__new__
        types = _TYPE_BY_CODE
        known_codes = len(types)
        max_length = self.max_record_bytes
        sequence = self.next_sequence
        pos = 0
        failure = None
        while size - pos >= _HEAD_SIZE:
            length, checksum, seq, code, key_length = unpack_head(buf, pos)
            if length < _MIN_PAYLOAD or length > max_length:
                failure = f"record length {length} is impossible"
                break
            start = pos + 8
            end = start + length
            if end > size:
                break
            if crc32(buf[start:end]) != checksum:
                failure = "checksum mismatch"
                break
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
            append(new(Event, (seq, event_type, key, buf[key_end:end], 0, 0)))
            sequence += 1
            pos = end
        self.next_sequence = sequence
        self.offset += pos
        if failure is not None:
            self.failure = DecodeFailure(self.offset, failure)
            self._buffer = b""
        else:
            self._buffer = buf[pos:]
        return events


def find_valid_record(data: bytes, *, max_record_bytes: int = 1 << 31) -> int | None:
    """Return the first position in ``data`` where a whole, checksummed record starts.

    Used after a bad record: if a valid record follows it, the log is corrupt
    in the middle rather than torn at the end.
    """
    view = memoryview(data)
    size = len(data)
    unpack_frame = _FRAME.unpack_from
    crc32 = zlib.crc32
    try:
        for pos in range(max(0, size - 8 - _MIN_PAYLOAD + 1)):
            length, checksum = unpack_frame(data, pos)
            if length < _MIN_PAYLOAD or length > max_record_bytes or pos + 8 + length > size:
                continue
            if crc32(view[pos + 8 : pos + 8 + length]) == checksum:
                code = data[pos + 16]
                if code in _TYPES:
                    return pos
        return None
    finally:
        view.release()
