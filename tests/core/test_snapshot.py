"""The snapshot format: what is written reads back exactly, and every kind of damage is refused with a clear message."""

from __future__ import annotations

import struct
from zlib import crc32  # zlib's own, beside the one tuco uses

import pytest

from tuco.core.snapshot import (
    HEADER_SIZE,
    KeyRecord,
    LeaseRecord,
    SnapshotDecoder,
    SnapshotEncoder,
    SnapshotSummary,
    TokenEntry,
)
from tuco.errors import SnapshotFormatError

KEYS = [
    KeyRecord("a", bytes(range(256)), 3, 9, 4),
    KeyRecord("é/ключ", b"", 2, 2, 1),
    KeyRecord("ttl", b"x" * 300, 5, 6, 2, deadline=1_800_000_000_000),
    KeyRecord("leased", b"\x00\n\r", 7, 8, 1, lease=4),
]
LEASES = [LeaseRecord(4, 30_000, 1_800_000_000_500), LeaseRecord(1, 5_000, 1_700_000_000_000, "ops-team")]
TOKENS = [TokenEntry("0123456789abcdef", b'{"description":"ci","grants":[["", "read"]]}', 10)]


def encode(revision: int = 12) -> bytes:
    encoder = SnapshotEncoder(revision, 1_765_000_000_000)
    parts = [encoder.header(), *(encoder.lease(lease) for lease in LEASES)]
    parts += [encoder.key(KEYS[1]), encoder.token(TOKENS[0]), encoder.key(KEYS[0])]
    parts += [encoder.key(KEYS[2]), encoder.key(KEYS[3]), encoder.trailer()]
    return b"".join(parts)


def decode(data: bytes, chunk: int | None = None) -> tuple[list[object], SnapshotSummary]:
    decoder = SnapshotDecoder()
    items: list[object] = []
    step = chunk or len(data) or 1
    for start in range(0, len(data), step):
        items += decoder.feed(data[start : start + step])
    return items, decoder.finish()


def refusal(data: bytes) -> str:
    with pytest.raises(SnapshotFormatError) as caught:
        decode(data)
    return str(caught.value)


def test_records_round_trip_exactly_in_the_order_written() -> None:
    """Keys (every byte value, empty, large, expiring, leased), leases with and without owner and tokens read back."""
    data = encode()
    items, summary = decode(data)
    assert items == [*LEASES, KEYS[1], TOKENS[0], KEYS[0], KEYS[2], KEYS[3]]
    assert summary[:7] == (1, 12, 1_765_000_000_000, 4, 2, 1, len(data))
    assert len(summary.sha256) == 64


def test_a_large_value_round_trips() -> None:
    """A value over the checksum's large-buffer threshold reads back exactly."""
    encoder = SnapshotEncoder(3, 0)
    record = KeyRecord("big", bytes(range(256)) * 400, 1, 3, 2)
    items, summary = decode(encoder.header() + encoder.key(record) + encoder.trailer(), 5000)
    assert items == [record]
    assert summary.keys == 1


def test_chunks_of_any_size_decode_alike() -> None:
    """Fed a byte at a time or in odd chunks, the decoder finds the same records."""
    data = encode()
    whole = decode(data)
    assert decode(data, 1) == whole
    assert decode(data, 7) == whole
    assert decode(data, 4097) == whole


def test_every_truncation_is_refused() -> None:
    """Cut at any length short of the whole file, the snapshot is refused as truncated (never read as complete)."""
    data = encode()
    for length in range(len(data)):
        message = refusal(data[:length])
        assert "truncated" in message or "shorter than" in message, (length, message)


def test_every_flipped_bit_is_refused() -> None:
    """A single flipped bit anywhere (header, records, trailer) is refused."""
    data = encode()
    for position in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[position // 8] ^= 1 << (position % 8)
        with pytest.raises(SnapshotFormatError):
            decode(bytes(damaged))


def test_a_flipped_value_bit_names_the_checksum_and_the_offset() -> None:
    """Damage inside a record is reported as that record failing its checksum, at its offset."""
    data = bytearray(encode())
    data[-200] ^= 0x10
    message = refusal(bytes(data))
    assert "fails its checksum" in message
    assert "at offset" in message


def test_another_format_version_is_refused_by_number() -> None:
    """A header of format version 2 is refused, saying which versions this build reads."""
    data = bytearray(encode())
    struct.pack_into("<I", data, 8, 2)
    assert refusal(bytes(data)) == "snapshot format version 2 is not supported (this build reads version 1)"


def test_a_log_file_or_other_file_is_not_a_snapshot() -> None:
    """A tuco log, or any other bytes, is refused as not a snapshot."""
    from tuco.core.codec import encode_header

    assert refusal(encode_header() + b"\0" * 16) == "this is a tuco log file, not a snapshot"
    assert refusal(b"PK\x03\x04" + b"\0" * 40).startswith("not a tuco snapshot")


def test_a_digest_that_does_not_match_is_refused() -> None:
    """A trailer whose SHA-256 differs (its own CRC made good) is refused as not matching the contents."""
    data = bytearray(encode())
    data[-1] ^= 0xFF
    trailer_payload = bytes(data[-(13 + 24 + 32) :])
    struct.pack_into("<I", data, len(data) - len(trailer_payload) - 4, crc32(trailer_payload))
    assert "SHA-256 digest in the trailer does not match" in refusal(bytes(data))


def test_a_record_rewritten_with_a_good_crc_still_fails_the_digest() -> None:
    """Changing a value and fixing its record's CRC is caught by the whole-file digest."""
    data = bytearray(encode())
    start = HEADER_SIZE
    length = struct.unpack_from("<I", data, start)[0]
    data[start + 8 + 13 + 8] ^= 1  # the first lease's ttl
    struct.pack_into("<I", data, start + 4, crc32(bytes(data[start + 8 : start + 8 + length])))
    assert "SHA-256" in refusal(bytes(data))


def test_bytes_after_the_trailer_are_refused() -> None:
    """Anything after the trailer (two snapshots concatenated) is refused."""
    assert "after the trailer" in refusal(encode() + b"\0" * 9)
    assert "after the trailer" in refusal(encode() + b"\0")


def test_a_record_past_the_snapshot_revision_is_refused() -> None:
    """A key whose mod revision is past the header's revision cannot belong to it."""
    encoder = SnapshotEncoder(5, 0)
    data = encoder.header() + encoder.key(KeyRecord("k", b"v", 1, 6, 1)) + encoder.trailer()
    assert "has revision 6, not in 1..5" in refusal(data)
