"""The log format records who made each change, when and why, in a record kind of its own (tuco.core.origin)."""

from __future__ import annotations

import pytest

from tuco.core.codec import SPLIT_VALUE_BYTES, RecordDecoder, encode_event, encode_record, encode_records
from tuco.core.events import Event, EventType, Lifetime
from tuco.core.origin import MAX_BY_BYTES, Reason, clip_by, new_origin
from tuco.core.txn import encode_writes

BY = new_origin("ci-token", 1_764_000_000_123)
EVENTS = [
    Event(1, EventType.PUT, "a", b"v", origin=BY),
    Event(2, EventType.PUT, "k\n\u00e9", bytes(range(256)), origin=new_origin("CN=svc,O=x", 7)),
    Event(3, EventType.DELETE, "a", origin=new_origin("expirer", 8, Reason.EXPIRED)),
    Event(4, EventType.PUT, "t", b"x", 0, 0, Lifetime(99, 0), origin=BY),
    Event(5, EventType.LEASE_GRANT, "", b"owner", 0, 0, Lifetime(100, 5, 30), origin=BY),
    Event(6, EventType.PUT, "l", b"y", 0, 0, Lifetime(0, 5), origin=BY),
    Event(7, EventType.DELETE, "l", origin=new_origin("lease-revoke", 9, Reason.LEASE_REVOKED)),
    Event(8, EventType.LEASE_REVOKE, "", b"", 0, 0, Lifetime(0, 5), origin=new_origin("lease-revoke", 9)),
    Event(
        9,
        EventType.TXN,
        "",
        encode_writes([(EventType.DELETE, "t", b"", 0, 0)]),
        origin=new_origin("anonymous", 10, Reason.RANGE_DELETE),
    ),
    Event(10, EventType.TOKEN_CREATE, "tok", b'{"grants": []}', origin=BY),
    Event(11, EventType.PUT, "plain", b"no origin"),
]


def decode(data: bytes) -> tuple[list[Event], RecordDecoder]:
    """Every event in ``data`` (records only, starting at sequence 1)."""
    decoder = RecordDecoder(start_offset=0)
    return decoder.feed(data), decoder


def test_every_kind_of_record_round_trips_with_its_origin() -> None:
    """Each event decodes to itself, origin included; one without an origin decodes with None."""
    events, decoder = decode(b"".join(encode_event(e) for e in EVENTS))
    assert decoder.failure is None
    assert events == EVENTS
    assert [e.origin for e in events][-1] is None


def test_a_record_without_an_origin_is_written_exactly_as_before() -> None:
    """No origin, no change: the bytes are today's record's."""
    assert encode_event(Event(1, EventType.PUT, "a", b"v")) == encode_record(1, EventType.PUT, "a", b"v")
    assert encode_event(Event(2, EventType.DELETE, "a")) == encode_record(2, EventType.DELETE, "a")


def test_an_attributed_record_fed_byte_by_byte_decodes_once_whole() -> None:
    """A streaming decoder sees the attributed record only when all of it has arrived."""
    data = encode_event(EVENTS[2])
    decoder = RecordDecoder(first_sequence=3, start_offset=0)
    seen: list[Event] = []
    for i in range(len(data)):
        seen += decoder.feed(data[i : i + 1])
        assert seen == ([] if i < len(data) - 1 else [EVENTS[2]])
    assert decoder.failure is None


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda p: p[:21] + b"\x09" + p[22:], "malformed origin (reason 9)"),
        (
            lambda p: p[:30] + (2).to_bytes(8, "little") + p[38:],
            "malformed attributed record (inner type 1, sequence 2)",
        ),
        (lambda p: p[:22] + b"\xff" + p[23:], "the origin's principal is not valid UTF-8"),
        (lambda p: p[:43] + b"\xff" + p[44:], "key is not valid UTF-8"),
    ],
)
def test_a_malformed_attributed_record_is_corruption_named(mangle: object, why: str) -> None:
    """A bad reason, principal or key, or an inner record of another sequence stops decoding with the reason."""
    import zlib

    record = encode_event(Event(1, EventType.PUT, "a", b"v", origin=new_origin("ci-token", 5)))
    payload = mangle(record[8:])  # type: ignore[operator]
    framed = len(payload).to_bytes(4, "little") + zlib.crc32(payload).to_bytes(4, "little") + payload
    events, decoder = decode(framed)
    assert events == []
    assert decoder.failure is not None and decoder.failure.reason == why


def test_records_of_one_origin_share_it_and_a_principal_is_one_string() -> None:
    """A batch's records decode to one Origin; any change of bytes, moment or reason is seen, across feeds too."""
    origins = [
        new_origin("ci-token", 5),
        new_origin("ci-token", 5),
        new_origin("ci-tokem", 5),  # same length and moment, another principal
        new_origin("ci-tokem", 6),
        new_origin("ci-tokem", 6, Reason.DELETED),
        new_origin("ci-tokem", 6, Reason.DELETED),
    ]
    events = [
        Event(i + 1, EventType.DELETE if o[2] else EventType.PUT, f"k{i}", b"" if o[2] else b"v", origin=o)
        for i, o in enumerate(origins)
    ]
    data = b"".join(encode_event(e) for e in events)
    cut = len(encode_event(events[0])) + 3  # the second record split over two feeds
    decoder = RecordDecoder(start_offset=0)
    decoded = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
    assert decoder.failure is None
    assert decoded == events
    assert [e.origin for e in decoded] == origins
    assert decoded[0].origin is decoded[1].origin and decoded[4].origin is decoded[5].origin
    assert decoded[2].origin is not decoded[3].origin is not decoded[4].origin
    assert decoded[2].origin is not None and decoded[3].origin is not None
    assert decoded[2].origin[0] is decoded[3].origin[0]


def test_the_group_commit_encoder_writes_what_encode_event_writes() -> None:
    """encode_records frames attributed PUTs and DELETEs byte for byte as encode_event does, large values apart."""
    big = b"b" * SPLIT_VALUE_BYTES
    events = [
        Event(1, EventType.PUT, "a", b"v", origin=BY),
        Event(2, EventType.PUT, "k\u00e9", b"w", origin=BY),
        Event(3, EventType.DELETE, "a", origin=new_origin("CN=\u00e9", 8, Reason.DELETED)),
        Event(4, EventType.PUT, "plain", b"x"),
        Event(5, EventType.PUT, "big", big, origin=BY),
    ]
    parts, split = encode_records(events)
    assert split
    assert b"".join(parts) == b"".join(encode_event(e) for e in events)
    assert parts[-1] is big
    decoded, decoder = decode(b"".join(parts))
    assert decoder.failure is None and decoded == events


def test_a_principal_name_is_bounded() -> None:
    """A very long certificate identity is cut to the recorded bound, on a character boundary."""
    assert clip_by("x" * 10) == "x" * 10
    clipped = clip_by("\u00e9" * MAX_BY_BYTES)
    assert len(clipped.encode()) == MAX_BY_BYTES and clipped == "\u00e9" * (MAX_BY_BYTES // 2)
