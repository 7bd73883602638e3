from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuco.core.codec import (
    ENTRY_OVERHEAD,
    FORMAT_VERSION,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD_BYTES,
    PLAIN_VERSION,
    RECORD_OVERHEAD,
    SPLIT_VALUE_BYTES,
    DecodeFailure,
    LogHeader,
    RecordDecoder,
    RecordHead,
    decode_header,
    encode_entry,
    encode_header,
    encode_record,
    encode_records,
    record_heads,
)
from tuco.core.events import Event, EventType
from tuco.errors import LogFormatError

# Keys with everything the book's line-based format could not carry.
awkward_keys = st.one_of(
    st.sampled_from(["", " ", "a b", "line\nbreak", "tab\there", "a/b/c", "\x00", "nul\x00inside", "🔑🦀", "é"]),
    st.text(),
)
events_strategy = st.lists(
    st.tuples(
        st.sampled_from([EventType.PUT, EventType.DELETE]),
        awkward_keys,
        st.one_of(st.just(b""), st.just(b"\x00"), st.binary()),
    ),
    max_size=20,
)


def encode_all(events: list[Event]) -> bytes:
    return b"".join(encode_record(e.sequence, e.type, e.key, e.value) for e in events)


def decode_all(
    data: bytes, chunk_sizes: list[int] | None = None, decoder: RecordDecoder | None = None
) -> tuple[list[Event], RecordDecoder]:
    """``data`` fed to ``decoder`` (by default a plain log's, from offset 0) in chunks of these sizes, then the rest."""
    if decoder is None:
        decoder = RecordDecoder(start_offset=0)
    decoded: list[Event] = []
    pos = 0
    sizes = iter(chunk_sizes or [])
    while pos < len(data):
        size = next(sizes, len(data) - pos)
        decoded.extend(decoder.feed(data[pos : pos + size]))
        pos += size
    return decoded, decoder


def test_header_round_trip() -> None:
    """The header is the magic, the version (1 without a compacted section), a reserved word and the first sequence."""
    header = encode_header()
    assert header == b"TUCOLOG\x00" + b"\x01\x00\x00\x00" + b"\x00\x00\x00\x00" + b"\x01" + bytes(7)
    assert len(header) == HEADER_SIZE == 24
    assert decode_header(header) == LogHeader(version=PLAIN_VERSION, first_sequence=1)
    assert (PLAIN_VERSION, FORMAT_VERSION) == (1, 2)
    compacted = encode_header(first_sequence=9, version=FORMAT_VERSION)
    assert compacted == b"TUCOLOG\x00" + b"\x02\x00\x00\x00" + b"\x00\x00\x00\x00" + b"\x09" + bytes(7)
    assert decode_header(compacted) == LogHeader(version=2, first_sequence=9)


def test_header_round_trips_a_compacted_logs_first_sequence() -> None:
    """A compacted log's first sequence is stored little-endian in the last 8 header bytes and decodes back."""
    header = encode_header(first_sequence=0x0102030405)
    assert header[16:] == b"\x05\x04\x03\x02\x01\x00\x00\x00"
    assert decode_header(header) == LogHeader(version=1, first_sequence=0x0102030405)


def test_header_with_first_sequence_zero_is_a_format_error() -> None:
    """Sequences start at 1, so a header claiming the log starts at 0 is refused."""
    with pytest.raises(LogFormatError, match="first sequence is 0"):
        decode_header(encode_header(first_sequence=0))


def test_header_with_wrong_magic_is_a_format_error() -> None:
    """A file that does not start with the magic is refused as not a tuco log."""
    with pytest.raises(LogFormatError, match="not a tuco log"):
        decode_header(b"NOTALOG\x00" + b"\x01\x00\x00\x00" + b"\x00\x00\x00\x00" + b"\x01" + bytes(7))


def test_header_with_unknown_version_is_a_format_error() -> None:
    """A header from a format version this build cannot read is refused, naming the version and what it reads."""
    for version in (0, 3):
        with pytest.raises(
            LogFormatError, match=f"^log format version {version} is not supported \\(this build reads 1 to 2\\)$"
        ):
            decode_header(encode_header(version=version))


def test_short_header_is_a_format_error() -> None:
    """Data shorter than the header (an empty file, say) is refused rather than misread."""
    with pytest.raises(LogFormatError, match="shorter than the 24-byte header"):
        decode_header(MAGIC)


def test_record_overhead_is_21_bytes() -> None:
    """Every record costs exactly 21 bytes on top of its UTF-8 key and value."""
    assert RECORD_OVERHEAD == 21
    assert len(encode_record(1, EventType.PUT, "", b"")) == 21
    assert len(encode_record(1, EventType.PUT, "key", b"value")) == 21 + 3 + 5
    assert len(encode_record(1, EventType.PUT, "é🔑", b"")) == 21 + 2 + 4


def test_known_record_has_exact_bytes() -> None:
    """A PUT and a DELETE encode to fixed bytes, so the on-disk format cannot change silently."""
    put = encode_record(7, EventType.PUT, "key", b"value")
    payload = (
        b"\x07\x00\x00\x00\x00\x00\x00\x00"  # sequence 7, u64 LE
        b"\x01"  # PUT
        b"\x03\x00\x00\x00"  # key length 3
        b"key"
        b"value"
    )
    assert put == b"\x15\x00\x00\x00" + b"\x29\x64\x9c\x21" + payload
    assert struct.unpack("<I", put[4:8])[0] == zlib.crc32(payload)
    delete = encode_record(8, EventType.DELETE, "key")
    assert delete == bytes.fromhex("1000000041bbb49908000000000000000203000000") + b"key"


@settings(max_examples=200, deadline=None)
@given(items=events_strategy, data=st.data())
def test_any_events_round_trip_through_any_chunking(
    items: list[tuple[EventType, str, bytes]], data: st.DataObject
) -> None:
    """Any events, encoded and fed to the decoder in chunks of any sizes, decode to the identical events."""
    events = [Event(i, t, k, v if t is EventType.PUT else b"") for i, (t, k, v) in enumerate(items, start=1)]
    encoded = encode_all(events)
    chunks = data.draw(st.lists(st.integers(1, max(1, len(encoded))), max_size=50))
    decoded, decoder = decode_all(encoded, chunks)
    assert decoded == events
    assert all(type(e.type) is EventType for e in decoded)
    assert decoder.failure is None
    assert decoder.pending_bytes == 0
    assert decoder.offset == len(encoded)
    assert decoder.next_sequence == len(events) + 1


@settings(max_examples=30, deadline=None)
@given(items=events_strategy)
def test_events_round_trip_one_byte_at_a_time(items: list[tuple[EventType, str, bytes]]) -> None:
    """Feeding the decoder a single byte at a time yields the same events as feeding it all at once."""
    events = [Event(i, t, k, v) for i, (t, k, v) in enumerate(items, start=1)]
    encoded = encode_all(events)
    decoded, decoder = decode_all(encoded, [1] * len(encoded))
    assert decoded == events
    assert decoder.offset == len(encoded)


def test_incomplete_record_is_held_back_not_a_failure() -> None:
    """A record cut short is kept pending (it may still arrive) and is not yet a failure."""
    record = encode_record(1, EventType.PUT, "k", b"v")
    decoder = RecordDecoder(start_offset=HEADER_SIZE)
    assert decoder.feed(record[:-1]) == []
    assert decoder.failure is None
    assert decoder.pending_bytes == len(record) - 1
    assert decoder.offset == HEADER_SIZE
    assert decoder.feed(record[-1:]) == [Event(1, EventType.PUT, "k", b"v")]
    assert decoder.offset == HEADER_SIZE + len(record)


@pytest.mark.parametrize("position", range(len(encode_record(1, EventType.PUT, "key", b"value"))))
def test_flipped_byte_is_a_failure(position: int) -> None:
    """Flipping any single bit of a record makes decoding stop at that record, never yield a wrong event."""
    good = encode_record(1, EventType.PUT, "good", b"1")
    bad = bytearray(encode_record(2, EventType.PUT, "key", b"value"))
    bad[position] ^= 0x01
    decoder = RecordDecoder(start_offset=0)
    events = decoder.feed(good + bytes(bad))
    assert events == [Event(1, EventType.PUT, "good", b"1")]
    # A damaged length either claims more bytes than exist (held back) or fails; nothing else.
    if decoder.failure is None:
        assert position < 4
        assert decoder.pending_bytes == len(bad)
    else:
        assert decoder.failure.offset == len(good)
    assert decoder.offset == len(good)


@settings(max_examples=300, deadline=None)
@given(items=events_strategy, data=st.data())
def test_a_damaged_log_fails_alike_however_it_is_chunked(
    items: list[tuple[EventType, str, bytes]], data: st.DataObject
) -> None:
    """One damaged byte anywhere: the same events, failure, offset and search start, fed whole or in any chunks.

    A record cut by a chunk's end is completed from the next chunk and decoded apart: where a failure is
    reported must not depend on where the chunks ended.
    """
    events = [Event(i, t, k, v if t is EventType.PUT else b"") for i, (t, k, v) in enumerate(items, start=1)]
    encoded = bytearray(encode_all(events))
    if encoded:
        encoded[data.draw(st.integers(0, len(encoded) - 1))] ^= data.draw(st.integers(1, 255))
    damaged = bytes(encoded)
    whole, whole_decoder = decode_all(damaged)
    chunks = data.draw(st.lists(st.integers(1, max(1, len(damaged))), max_size=40))
    chunked, chunked_decoder = decode_all(damaged, chunks)
    assert chunked == whole
    assert chunked_decoder.failure == whole_decoder.failure
    assert (chunked_decoder.offset, chunked_decoder.next_sequence) == (
        whole_decoder.offset,
        whole_decoder.next_sequence,
    )
    assert chunked_decoder.pending_bytes == whole_decoder.pending_bytes


def test_flipped_payload_byte_is_a_checksum_mismatch() -> None:
    """A damaged payload byte is reported as a checksum mismatch at the record's offset."""
    first = encode_record(1, EventType.PUT, "a", b"1")
    second = bytearray(encode_record(2, EventType.PUT, "b", b"2"))
    second[-1] ^= 0xFF
    decoder = RecordDecoder(start_offset=HEADER_SIZE)
    assert decoder.feed(first + bytes(second)) == [Event(1, EventType.PUT, "a", b"1")]
    assert decoder.failure == DecodeFailure(
        HEADER_SIZE + len(first), "checksum mismatch", HEADER_SIZE + len(first) + 23
    )
    assert decoder.feed(encode_record(3, EventType.PUT, "c")) == []


def test_sequence_gap_is_a_failure() -> None:
    """A record whose sequence is not exactly one more than the previous stops decoding."""
    first = encode_record(1, EventType.PUT, "a", b"1")
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(first + encode_record(3, EventType.PUT, "b", b"2")) == [Event(1, EventType.PUT, "a", b"1")]
    assert decoder.failure == DecodeFailure(len(first), "sequence 3 where 2 was expected", None)
    assert decoder.next_sequence == 2


def test_decoder_starting_at_n_rejects_any_other_first_record() -> None:
    """A decoder told the file starts at sequence 100 takes record 100 and refuses 1 or 101 in its place."""
    for wrong in (1, 99, 101):
        decoder = RecordDecoder(first_sequence=100, start_offset=HEADER_SIZE)
        assert decoder.feed(encode_record(wrong, EventType.PUT, "a")) == []
        assert decoder.failure == DecodeFailure(HEADER_SIZE, f"sequence {wrong} where 100 was expected", None)
    decoder = RecordDecoder(first_sequence=100, start_offset=HEADER_SIZE)
    first = encode_record(100, EventType.PUT, "a", b"1")
    events = decoder.feed(first + encode_record(101, EventType.DELETE, "a"))
    assert events == [Event(100, EventType.PUT, "a", b"1"), Event(101, EventType.DELETE, "a")]
    assert decoder.failure is None
    assert decoder.next_sequence == 102


def test_first_sequence_must_be_one() -> None:
    """A log whose first record is not sequence 1 is a failure, not a silently shifted history."""
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(encode_record(2, EventType.PUT, "a")) == []
    assert decoder.failure == DecodeFailure(0, "sequence 2 where 1 was expected", None)


def test_zero_filled_tail_is_a_failure_not_an_event() -> None:
    """Zeros after the last record (a preallocated or torn tail) are a length-0 failure, never an empty event."""
    record = encode_record(1, EventType.PUT, "a", b"1")
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(record + bytes(4096)) == [Event(1, EventType.PUT, "a", b"1")]
    assert decoder.failure == DecodeFailure(len(record), "record length 0 is impossible", len(record) + 1)
    assert decoder.offset == len(record)


def test_unknown_event_type_is_a_failure() -> None:
    """A checksummed record with an event type this build does not know is refused."""
    payload = struct.pack("<QBI", 1, 9, 1) + b"k"
    record = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(record) == []
    assert decoder.failure == DecodeFailure(0, "malformed record (type 9, key length 1)", None)


def test_key_longer_than_the_record_is_a_failure() -> None:
    """A checksummed record whose key length runs past its end is refused."""
    payload = struct.pack("<QBI", 1, 1, 50) + b"k"
    record = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(record) == []
    assert decoder.failure == DecodeFailure(0, "malformed record (type 1, key length 50)", None)


def test_key_that_is_not_utf8_is_a_failure() -> None:
    """A checksummed record whose key bytes are not UTF-8 is refused."""
    payload = struct.pack("<QBI", 1, 1, 1) + b"\xff"
    record = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(record) == []
    assert decoder.failure == DecodeFailure(0, "key is not valid UTF-8", None)


def test_record_over_the_format_maximum_is_a_failure() -> None:
    """A length above the format's maximum is impossible (searched from the next byte); the maximum itself is not."""
    head = struct.pack("<IIQBI", MAX_PAYLOAD_BYTES + 1, 0, 1, 1, 1)
    decoder = RecordDecoder(start_offset=0)
    assert decoder.feed(head + b"k") == []
    assert decoder.failure == DecodeFailure(0, f"record length {MAX_PAYLOAD_BYTES + 1} is impossible", 1)
    largest = RecordDecoder(start_offset=0)
    assert largest.feed(struct.pack("<IIQBI", MAX_PAYLOAD_BYTES, 0, 1, 1, 1) + b"k") == []
    assert largest.failure is None
    assert largest.wanted_bytes == 8 + MAX_PAYLOAD_BYTES - 22


def test_wanted_bytes_is_what_the_pending_record_still_lacks() -> None:
    """A reader learns how much of a large pending record is missing, to read it in one go."""
    record = encode_record(1, EventType.PUT, "k", b"x" * 1000)
    decoder = RecordDecoder(start_offset=0)
    assert decoder.wanted_bytes == 0
    assert decoder.feed(record[:5]) == []
    assert decoder.wanted_bytes == 0  # the length is not known yet
    assert decoder.feed(record[5:100]) == []
    assert decoder.wanted_bytes == len(record) - 100
    assert decoder.feed(record[100:]) == [Event(1, EventType.PUT, "k", b"x" * 1000)]
    assert decoder.wanted_bytes == 0


def head_of(position: int, record: bytes) -> RecordHead:
    return RecordHead(position, len(record) - 8, zlib.crc32(record[8:]))


def test_record_heads_skip_garbage() -> None:
    """A whole record after garbage is the only candidate, at its exact position."""
    garbage = b"\xde\xad\xbe\xef" * 10 + bytes(7)
    record = encode_record(5, EventType.DELETE, "k")
    assert list(record_heads(garbage + record + b"trailing", range(1, 10))) == [head_of(len(garbage), record)]


def test_record_heads_yield_every_candidate_in_order() -> None:
    """With several records after damage, each is a candidate, earliest first."""
    first, second = encode_record(1, EventType.PUT, "a", b"1"), encode_record(2, EventType.PUT, "b", b"2")
    assert list(record_heads(b"xyz" + first + second, range(1, 3))) == [head_of(3, first), head_of(3 + 23, second)]


@pytest.mark.parametrize(
    "data",
    [b"", bytes(4096), b"\xff" * 4096, bytes(range(256)) * 8],
    ids=["empty", "zeros", "ones", "bytes"],
)
def test_record_heads_find_nothing_in_garbage(data: bytes) -> None:
    """Pure garbage or zeros hold no candidate: a plausible length, type, key length and sequence all at once."""
    assert list(record_heads(data, range(1, 1 << 20))) == []


def test_record_heads_find_a_minimal_record_at_the_very_end() -> None:
    """The smallest possible record (empty key, empty value) is a candidate even as the last 21 bytes."""
    record = encode_record(1, EventType.PUT, "")
    assert len(record) == RECORD_OVERHEAD
    assert list(record_heads(b"junk" + record, range(1, 2))) == [head_of(4, record)]
    assert list(record_heads(record, range(1, 2))) == [head_of(0, record)]


def test_record_heads_ignore_sequences_this_log_cannot_hold() -> None:
    """A record whose sequence is outside the range that can follow the damage is no candidate."""
    record = encode_record(7, EventType.PUT, "k", b"v")
    assert list(record_heads(b"junk" + record, range(1, 7))) == []
    assert list(record_heads(b"junk" + record, range(8, 20))) == []
    assert list(record_heads(b"junk" + record, range(7, 8))) == [head_of(4, record)]


def test_record_heads_are_plausible_frames_only() -> None:
    """record_heads yields the frames that could start a record, with their declared length and checksum."""
    record = encode_record(3, EventType.DELETE, "key")
    heads = list(record_heads(bytes(30) + record + bytes(30), range(1, 10)))
    assert heads == [RecordHead(30, len(record) - 8, zlib.crc32(record[8:]))]
    assert list(record_heads(bytes(30) + record, range(1, 10), stop=30)) == []


def entry_event(sequence: int, key: str, value: bytes, create_revision: int, version: int) -> Event:
    return Event(sequence, EventType.PUT, key, value, create_revision, version)


def test_known_entry_has_exact_bytes() -> None:
    """A compacted entry encodes its mod revision as the sequence, type 3, then create revision and version."""
    entry = encode_entry("key", b"value", create_revision=3, mod_revision=7, version=2)
    payload = (
        b"\x07\x00\x00\x00\x00\x00\x00\x00"  # sequence = mod revision 7
        b"\x03"  # entry
        b"\x03\x00\x00\x00"  # key length 3
        b"\x03\x00\x00\x00\x00\x00\x00\x00"  # create revision 3
        b"\x02\x00\x00\x00\x00\x00\x00\x00"  # version 2
        b"key"
        b"value"
    )
    assert entry == struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    assert len(encode_entry("", b"", 1, 1, 1)) == ENTRY_OVERHEAD == 37


def test_compacted_section_decodes_to_puts_with_their_revisions_then_ordinary_records() -> None:
    """Entries become PUTs carrying create revision and version; ordinary records follow from the first sequence."""
    data = (
        encode_entry("b", b"2", 2, 2, 1)
        + encode_entry("a", b"1", 1, 5, 3)
        + encode_record(7, EventType.DELETE, "b")
        + encode_record(8, EventType.PUT, "c", b"3")
    )
    decoder = RecordDecoder(first_sequence=7, start_offset=0, compacted=True)
    assert decoder.feed(data) == [
        entry_event(2, "b", b"2", 2, 1),
        entry_event(5, "a", b"1", 1, 3),
        Event(7, EventType.DELETE, "b"),
        Event(8, EventType.PUT, "c", b"3"),
    ]
    assert (decoder.failure, decoder.offset, decoder.next_sequence, decoder.entries) == (None, len(data), 9, 2)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(st.tuples(awkward_keys, st.binary(max_size=30), st.integers(1, 3)), max_size=8),
    ordinary=events_strategy,
    data=st.data(),
)
def test_a_damaged_compacted_log_fails_alike_however_it_is_chunked(
    items: list[tuple[str, bytes, int]], ordinary: list[tuple[EventType, str, bytes]], data: st.DataObject
) -> None:
    """Entries, then records, one byte damaged anywhere: fed whole or in any chunks, the same events and failure."""
    entries: list[Event] = []
    sequence = 0
    for key, value, gap in items:
        sequence += gap
        entries.append(entry_event(sequence, key, value, sequence, 1))
    first = sequence + 1
    records = [Event(first + i, t, k, v) for i, (t, k, v) in enumerate(ordinary)]
    encoded = bytearray(
        b"".join(encode_entry(e.key, e.value, e.create_revision, e.sequence, e.version) for e in entries)
    )
    encoded += encode_all(records)
    if encoded:
        encoded[data.draw(st.integers(0, len(encoded) - 1))] ^= data.draw(st.integers(1, 255))
    damaged = bytes(encoded)
    chunks = data.draw(st.lists(st.integers(1, max(1, len(damaged))), max_size=30))
    outcomes = []
    for sizes in (None, chunks):
        decoded, decoder = decode_all(
            damaged, sizes, RecordDecoder(first_sequence=first, start_offset=0, compacted=True)
        )
        outcomes.append((decoded, decoder.failure, decoder.offset, decoder.next_sequence, decoder.pending_bytes))
    assert outcomes[1] == outcomes[0]


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(st.tuples(awkward_keys, st.binary(), st.integers(1, 3), st.integers(0, 2)), max_size=12),
    ordinary=events_strategy,
    data=st.data(),
)
def test_entries_and_records_round_trip_through_any_chunking(
    items: list[tuple[str, bytes, int, int]],
    ordinary: list[tuple[EventType, str, bytes]],
    data: st.DataObject,
) -> None:
    """A compacted section of any entries and any ordinary records after it decode exactly, however chunked."""
    entries: list[Event] = []
    sequence = 0
    for key, value, gap, writes in items:
        sequence += gap
        created = max(1, sequence - writes)
        entries.append(entry_event(sequence, key, value, created, sequence - created + 1))
    first = sequence + 1
    records = [Event(first + i, t, k, v) for i, (t, k, v) in enumerate(ordinary)]
    encoded = b"".join(encode_entry(e.key, e.value, e.create_revision, e.sequence, e.version) for e in entries)
    encoded += encode_all(records)
    chunks = data.draw(st.lists(st.integers(1, max(1, len(encoded))), max_size=30))
    decoded, decoder = decode_all(encoded, chunks, RecordDecoder(first_sequence=first, start_offset=0, compacted=True))
    assert decoded == entries + records
    assert (decoder.failure, decoder.pending_bytes, decoder.offset) == (None, 0, len(encoded))
    assert (decoder.next_sequence, decoder.entries) == (first + len(records), len(entries))


def test_an_entry_is_malformed_in_a_version_1_log_and_after_an_ordinary_record() -> None:
    """Entries exist only in a compacted section: a plain log, or one past its first ordinary record, refuses them."""
    entry = encode_entry("k", b"v", 1, 1, 1)
    plain = RecordDecoder(first_sequence=1, start_offset=0)
    assert plain.feed(entry) == []
    assert plain.failure == DecodeFailure(0, "malformed record (type 3, key length 1)", None)
    late = RecordDecoder(first_sequence=5, start_offset=0, compacted=True)
    ordinary = encode_record(5, EventType.PUT, "a", b"1")
    assert late.feed(ordinary + encode_entry("k", b"v", 1, 2, 1)) == [Event(5, EventType.PUT, "a", b"1")]
    assert late.failure == DecodeFailure(len(ordinary), "malformed record (type 3, key length 1)", None)


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (encode_entry("b", b"", 2, 2, 1), "entry with sequence 2 after 2, where 3 to 9 may follow"),
        (encode_entry("b", b"", 1, 1, 1), "entry with sequence 1 after 2, where 3 to 9 may follow"),
        (encode_entry("b", b"", 3, 10, 1), "entry with sequence 10 after 2, where 3 to 9 may follow"),
        (encode_entry("b", b"", 0, 4, 1), "entry 4 with create revision 0 and version 1 is impossible"),
        (encode_entry("b", b"", 5, 4, 1), "entry 4 with create revision 5 and version 1 is impossible"),
        (encode_entry("b", b"", 3, 4, 0), "entry 4 with create revision 3 and version 0 is impossible"),
        (encode_entry("b", b"", 3, 4, 3), "entry 4 with create revision 3 and version 3 is impossible"),
    ],
    ids=["same-sequence", "earlier", "not-below-first", "created-0", "created-later", "version-0", "too-many-writes"],
)
def test_a_whole_entry_out_of_order_or_with_impossible_revisions_is_a_failure(second: bytes, reason: str) -> None:
    """A checksummed entry must rise above the last one, stay below the first sequence, and have possible revisions."""
    first = encode_entry("a", b"1", 1, 2, 2)
    decoder = RecordDecoder(first_sequence=10, start_offset=0, compacted=True)
    assert decoder.feed(first + second) == [entry_event(2, "a", b"1", 1, 2)]
    assert decoder.failure == DecodeFailure(len(first), reason, None)


def test_a_damaged_entry_is_a_checksum_mismatch_searched_after_its_span() -> None:
    """A damaged entry stops decoding with a checksum mismatch, to be searched for records after its declared span."""
    good = encode_entry("a", b"1", 1, 1, 1)
    bad = bytearray(encode_entry("b", b"2", 2, 2, 1))
    bad[-1] ^= 0xFF
    decoder = RecordDecoder(first_sequence=3, start_offset=HEADER_SIZE, compacted=True)
    assert decoder.feed(good + bytes(bad)) == [entry_event(1, "a", b"1", 1, 1)]
    assert decoder.failure == DecodeFailure(
        HEADER_SIZE + len(good), "checksum mismatch", HEADER_SIZE + len(good) + len(bad)
    )


def test_an_incomplete_entry_is_held_back_and_wanted() -> None:
    """An entry cut short is pending, not a failure, and the decoder asks for exactly the bytes it lacks."""
    entry = encode_entry("k", b"x" * 1000, 1, 1, 1)
    decoder = RecordDecoder(first_sequence=2, start_offset=0, compacted=True)
    assert decoder.feed(entry[:100]) == []
    assert (decoder.failure, decoder.pending_bytes, decoder.wanted_bytes) == (None, 100, len(entry) - 100)
    assert decoder.feed(entry[100:]) == [entry_event(1, "k", b"x" * 1000, 1, 1)]


def test_record_heads_find_entries_only_in_a_compacted_log() -> None:
    """An entry after garbage is a candidate when the log is compacted, and no record at all otherwise."""
    entry = encode_entry("k", b"v", 1, 4, 2)
    assert next(record_heads(b"junk" + entry, range(1, 10), compacted=True)) == head_of(4, entry)
    assert [head.position for head in record_heads(b"junk" + entry, range(1, 10))] == [17]  # a plausible frame only


def test_encode_records_keeps_large_values_apart_and_writes_the_same_bytes() -> None:
    """A batch's buffers join to exactly its records; a value of SPLIT_VALUE_BYTES or more is its own buffer."""
    large = bytes(range(256)) * (SPLIT_VALUE_BYTES // 256)
    events = [
        Event(7, EventType.PUT, "small", b"v" * 100),
        Event(8, EventType.PUT, "large é", large),
        Event(9, EventType.DELETE, "small"),
        Event(10, EventType.PUT, "just under", large[:-1]),
    ]
    parts, split = encode_records(events)
    assert split is True
    assert b"".join(parts) == b"".join(encode_record(e.sequence, e.type, e.key, e.value) for e in events)
    assert len(parts) == 5
    assert parts[2] is large  # written from the body's own buffer, not copied
    assert [len(part) for part in parts] == [
        RECORD_OVERHEAD + 5 + 100,
        RECORD_OVERHEAD + len("large é".encode()),
        len(large),
        RECORD_OVERHEAD + 5,
        RECORD_OVERHEAD + 10 + len(large) - 1,
    ]
    assert encode_records(events[:1]) == ([encode_record(7, EventType.PUT, "small", b"v" * 100)], False)
    payload = struct.pack("<QBI", 8, 1, 8) + "large é".encode() + large  # framed by hand, checksummed by zlib
    assert parts[1] + parts[2] == struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
