"""The log format's constants and header: record kinds, struct layouts and limits (see :mod:`tuco.core.codec`)."""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

# zlib's CRC-32 as ISA-L computes it: the checksum of every record. The same function, and faster at every size
# (a 129-byte record's 35 ns against zlib's 150 ns, a 16 KiB value's 1.3 against 4.4 µs, on these machines).
from isal.isal_zlib import crc32 as crc32

from tuco.core.events import EventType
from tuco.errors import LogFormatError

MAGIC = b"TUCOLOG\x00"
FORMAT_VERSION = 2
"""The newest format this build reads and writes (with a compacted section); it also reads version 1."""
PLAIN_VERSION = 1
"""The version of a log without a compacted section: readable by every build."""
_HEADER = struct.Struct("<8sIIQ")
HEADER_SIZE: Final = _HEADER.size
_FRAME = struct.Struct("<II")
_LENGTH = struct.Struct("<I")
_PAYLOAD = struct.Struct("<QBI")
RECORD_OVERHEAD: Final = _FRAME.size + _PAYLOAD.size
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
_TXN = 15
_SHARED_ENTRY = 16  # an entry at the revision of the entry before it (one transaction wrote both)
_SHARED_EXPIRING_ENTRY = 17
_ATTRIBUTED = 18  # any record above, wrapped with who wrote it, when and why (an old build reports it as unknown)
_ORIGIN = struct.Struct("<QB")  # an attributed record's moment (Unix ms) and reason, after the payload head
_TOKEN_CODES = {_TOKEN_CREATE: EventType.TOKEN_CREATE, _TOKEN_REVOKE: EventType.TOKEN_REVOKE}
_CODE_OF_TOKEN = {EventType.TOKEN_CREATE: _TOKEN_CREATE, EventType.TOKEN_REVOKE: _TOKEN_REVOKE}
_MAX_ENTRY = MAX_PAYLOAD_BYTES + _REVISIONS.size
ENTRY_OVERHEAD = _FRAME.size + _MIN_ENTRY
_LEASE_CODES = {t.value: t for t in (EventType.LEASE_GRANT, EventType.LEASE_KEEPALIVE, EventType.LEASE_REVOKE)}
# Record codes are not EventType numbers from 7 on (7 and 8 were taken by expiring kinds first).
_RECORD_CODES = frozenset(
    (EventType.PUT, EventType.DELETE, *_LEASE_CODES, _EXPIRING_PUT, *_TOKEN_CODES, _OWNED_GRANT, _TXN, _ATTRIBUTED)
)
_ENTRY_CODES = frozenset(
    (_ENTRY, _EXPIRING_ENTRY, _LEASE_ENTRY, _TOKEN_ENTRY, _OWNED_LEASE_ENTRY, _SHARED_ENTRY, _SHARED_EXPIRING_ENTRY)
)


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


SPLIT_VALUE_BYTES: Final = 16 * 1024
"""Values at least this big stay in their own buffer in :func:`encode_records`: written as they are, never copied."""
