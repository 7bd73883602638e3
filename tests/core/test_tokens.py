"""Tokens as pure values: parsing, grants, the stored record, and token events through codec and store."""

from __future__ import annotations

from typing import Any

import pytest

from tuco.core.codec import RecordDecoder, encode_event, encode_token_entry
from tuco.core.events import Event, EventType
from tuco.core.store import Store
from tuco.core.tokens import (
    Grant,
    Permission,
    TokenRecord,
    Tokens,
    allows,
    check_bootstrap_token,
    decode_record,
    digest,
    encode_record,
    parse_bearer,
    parse_token,
)

SECRET = "A" * 20 + "b" * 23
TOKEN = f"tuco_0123456789abcdef_{SECRET}"


def record(**changes: Any) -> TokenRecord:
    base = TokenRecord("0123456789abcdef", "ci", (Grant("a/", Permission.WRITE),), 0, digest(SECRET.encode()))
    return base._replace(**changes)


def test_a_token_parses_into_its_id_and_secret_and_nothing_else_does() -> None:
    """tuco_<16 hex>_<43 url-safe> parses; other lengths, upper-case ids and other prefixes do not."""
    assert parse_token(TOKEN.encode()) == ("0123456789abcdef", SECRET.encode())
    for bad in (TOKEN[:-1], TOKEN + "x", TOKEN.replace("abcdef", "ABCDEF"), "x" + TOKEN, TOKEN.replace("_", "-", 1)):
        assert parse_token(bad.encode()) is None


@pytest.mark.parametrize(
    ("header", "credential"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer   abc ", b"abc"),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer a b", None),
        (b"Bearer " + b"x" * 513, None),
        (b"Bearer \xc3\xa9", None),
    ],
)
def test_the_bearer_credential_is_read_strictly(header: bytes, credential: bytes | None) -> None:
    """Only the Bearer scheme with one ASCII credential of at most 512 bytes is taken."""
    assert parse_bearer(header) == credential


def test_write_implies_read_admin_implies_write_and_prefixes_bound_them() -> None:
    """A grant covers keys its prefix starts, at its permission and below; "" covers every key."""
    grants = (Grant("a/", Permission.WRITE), Grant("", Permission.READ))
    assert allows(grants, "a/x", Permission.READ) and allows(grants, "a/x", Permission.WRITE)
    assert not allows(grants, "b/x", Permission.WRITE) and allows(grants, "b/x", Permission.READ)
    assert not allows(grants, "a/x", Permission.ADMIN)
    assert allows((Grant("", Permission.ADMIN),), "anything", Permission.WRITE)
    assert not allows((Grant("a/", Permission.READ),), "a", Permission.READ)  # a listing of "a" is wider than a/


def test_a_record_round_trips_through_its_bytes_without_the_secret() -> None:
    """encode_record keeps grants, expiry, digest and cert; the secret itself is never in the bytes."""
    original = record(expires_at=1_900_000_000_000, cert="")
    encoded = encode_record(original)
    assert SECRET.encode() not in encoded
    assert decode_record(original.id, encoded, 7) == original._replace(created=7)
    cert = record(sha256=b"", cert="dns:client.example")
    assert decode_record(cert.id, encode_record(cert), 3) == cert._replace(created=3)


def test_the_registry_verifies_in_constant_time_and_refuses_expired_revoked_and_wrong() -> None:
    """verify takes the right secret only, not after expiry or revocation; certificates are found by identity."""
    tokens = Tokens()
    tokens.create(record(expires_at=1000))
    assert tokens.verify("0123456789abcdef", SECRET.encode(), 999) is not None
    assert tokens.verify("0123456789abcdef", SECRET.encode(), 1000) is None
    assert tokens.verify("0123456789abcdef", b"B" * 43, 0) is None
    tokens.create(record(id="cafe000000000000", sha256=b"", cert="svc"))
    assert tokens.for_cert("svc", 0) is not None and tokens.for_cert("other", 0) is None
    assert tokens.verify("cafe000000000000", b"", 0) is None  # a certificate grant has no secret to match
    tokens.revoke("cafe000000000000")
    assert tokens.for_cert("svc", 0) is None and "cafe000000000000" in tokens.revoked
    assert [r.id for r in tokens.live(999)] == ["0123456789abcdef"] and tokens.live(1000) == []


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("short", "at least 32"),
        ("a" * 40, "distinct"),
        ("abcdefghij" * 3 + "k y", "may hold only"),
        ("0123456789abcdef" * 40, "over 512"),
    ],
)
def test_a_weak_bootstrap_token_is_refused_with_the_reason(token: str, fragment: str) -> None:
    """Under 32 characters, too few distinct ones, spaces or over 512 characters: refused, saying why."""
    reason = check_bootstrap_token(token)
    assert reason is not None and fragment in reason


def test_a_random_bootstrap_token_is_accepted() -> None:
    """openssl rand -hex 32 and secrets.token_urlsafe(32) both pass."""
    assert check_bootstrap_token("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") is None
    assert check_bootstrap_token("mSg3d3bOfyq0-4_zTCdqvw6N1nM7Xy2yN2Yd0QZr8aE") is None


def test_token_events_round_trip_through_the_codec_after_other_kinds() -> None:
    """Create and revoke records decode as the events they were; the record bytes survive exactly."""
    value = encode_record(record())
    events = [
        Event(1, EventType.PUT, "k", b"v"),
        Event(2, EventType.TOKEN_CREATE, "0123456789abcdef", value),
        Event(3, EventType.TOKEN_REVOKE, "0123456789abcdef"),
    ]
    data = b"".join(encode_event(e) for e in events)
    decoder = RecordDecoder()
    assert decoder.feed(data) == events and decoder.failure is None


def test_a_compacted_token_entry_decodes_as_its_creation() -> None:
    """A token entry in the compacted section is the TOKEN_CREATE event of its creation."""
    value = encode_record(record())
    decoder = RecordDecoder(first_sequence=10, compacted=True)
    decoded = decoder.feed(encode_token_entry("0123456789abcdef", value, 4))
    assert decoded == [Event(4, EventType.TOKEN_CREATE, "0123456789abcdef", value)]


def test_a_damaged_token_record_is_a_failure_not_a_grant() -> None:
    """A token record with a flipped byte fails its checksum; nothing is decoded from it."""
    data = bytearray(encode_event(Event(1, EventType.TOKEN_CREATE, "0123456789abcdef", encode_record(record()))))
    data[-3] ^= 0x01
    decoder = RecordDecoder()
    assert decoder.feed(bytes(data)) == [] and decoder.failure is not None


def test_the_store_applies_token_events_live_and_in_replay_without_touching_keys() -> None:
    """Token events move the revision and the registry, never a key; replay builds the same registry."""
    value = encode_record(record())
    events = [
        Event(1, EventType.TOKEN_CREATE, "0123456789abcdef", value),
        Event(2, EventType.PUT, "0123456789abcdef", b"a key of that name"),
        Event(3, EventType.TOKEN_CREATE, "fedcba9876543210", encode_record(record(id="fedcba9876543210"))),
        Event(4, EventType.TOKEN_REVOKE, "fedcba9876543210"),
    ]
    live = Store()
    for event in events:
        live.apply(event)
    replayed = Store()
    replayed.apply_batch(events)
    for store in (live, replayed):
        assert store.last_sequence == 4
        assert store.snapshot() == {"0123456789abcdef": b"a key of that name"}
        assert [r.id for r in store.tokens] == ["0123456789abcdef"]
        assert store.tokens.get("0123456789abcdef") == record(created=1)
    assert live.page("", limit=10).items[0].key == "0123456789abcdef"


def test_an_unreadable_record_grants_nothing() -> None:
    """A checksummed TOKEN_CREATE whose value is not a record is skipped: no token, the revision still moves."""
    store = Store()
    store.apply(Event(1, EventType.TOKEN_CREATE, "0123456789abcdef", b"not json"))
    assert len(store.tokens) == 0 and store.last_sequence == 1
