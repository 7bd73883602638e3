"""The log format's streaming decoder: chunks of any size in, events out (see :mod:`tuco.core.codec`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tuco.core._format import (
    _ATTRIBUTED,
    _ENTRY_CODES,
    _ENTRY_HEAD_SIZE,
    _EXPIRING_ENTRY,
    _EXPIRING_PUT,
    _FRAME,
    _HEAD,
    _HEAD_SIZE,
    _LEASE,
    _LEASE_CODES,
    _LEASE_ENTRY,
    _LENGTH,
    _MAX_ENTRY,
    _MIN_ENTRY,
    _MIN_PAYLOAD,
    _ORIGIN,
    _OWNED_GRANT,
    _OWNED_LEASE_ENTRY,
    _PAIR,
    _PAYLOAD,
    _RECORD_CODES,
    _REVISIONS,
    _SHARED_ENTRY,
    _SHARED_EXPIRING_ENTRY,
    _TOKEN_CODES,
    _TOKEN_ENTRY,
    _TXN,
    HEADER_SIZE,
    MAX_PAYLOAD_BYTES,
    crc32,
)
from tuco.core.events import Event, EventType, Lifetime, PlainWrites
from tuco.core.origin import REASONS, Origin, new_origin
from tuco.core.txn import decode_writes
from tuco.errors import LogFormatError

__all__ = ["DecodeFailure", "RecordDecoder", "RecordHead", "record_heads"]

_native_decode: Callable[[bytes, int, int, int, list[str], list[bytes | None], list[Any], bytes, Any], int] | None
try:  # the compiled build's C loop for the plain records; the pure build decodes each below
    from tuco.core._native import decode_plain as _native_decode
except ImportError:
    _native_decode = None


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

    __slots__ = (
        "_buffer",
        "_entries_below",
        "_last_entry",
        "_origin",
        "_origin_bytes",
        "entries",
        "failure",
        "next_sequence",
        "offset",
    )

    def __init__(self, *, first_sequence: int = 1, start_offset: int = HEADER_SIZE, compacted: bool = False) -> None:
        self._buffer = b""
        self.offset = start_offset
        self.next_sequence = first_sequence
        self.failure: DecodeFailure | None = None
        self._entries_below = first_sequence if compacted else 0  # 0 once past the compacted section
        self._last_entry = 0
        self._origin: Origin | None = None  # the last attributed record's origin, and its bytes, moment and reason
        self._origin_bytes = b""  # ...as the record holds it: moment, reason and principal
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
        """Decode every complete record in what has been fed so far: :meth:`feed_batches`, as one list of events."""
        return [event for batch in self.feed_batches(data) for event in batch]

    def feed_batches(self, data: bytes) -> list[Sequence[Event]]:
        """Decode every complete record in what has been fed so far, in order, as batches of events.

        A run of PUTs and DELETEs without a deadline is one :class:`PlainWrites`
        (no event built per record); any other records come as lists of
        :class:`Event`, and compacted entries as a list before them.
        """
        stopped = self.failure  # a local: mypy would keep self.failure narrowed to None past _decode's calls
        if stopped is not None:
            return []
        pending = self._buffer
        if not pending:
            return self._decode(data, 0)
        # The record cut by the last chunk's end is completed from the head of this one and decoded alone, then
        # this chunk in place: joining the few pending bytes to the whole chunk copied every chunk of a replay
        # (a fifth of a million-key start-up, its pages faulted in afresh each time).
        missing = _missing_bytes(pending)
        if not 0 < missing < len(data):
            return self._decode(pending + data, 0)
        batches = self._decode(pending + data[:missing], 0)
        if self.failure is not None:
            return batches
        if self._buffer:  # not consumed whole (never, by the record's own length): join the rest as before
            return batches + self._decode(self._buffer + data[missing:], 0)
        batches.extend(self._decode(data, missing))
        return batches

    def _decode(self, buf: bytes, start: int) -> list[Sequence[Event]]:
        """Decode the records of ``buf`` from ``start``; keep what is left of it pending, or why decoding stopped."""
        batches: list[Sequence[Event]] = []
        pos = start
        failure = None
        search_from: int | None = None
        if self._entries_below:
            entries: list[Event] = []
            pos, failure, search_from = self._decode_entries(buf, pos, entries)
            if entries:
                batches.append(entries)
        if failure is None and not self._entries_below:
            pos, failure, search_from = self._decode_records(buf, pos, batches)
        base = self.offset - start  # the absolute offset of buf[0]
        self.offset += pos - start
        if failure is not None:
            self.failure = DecodeFailure(self.offset, failure, None if search_from is None else base + search_from)
            self._buffer = b""
        else:
            self._buffer = buf[pos:]
        return batches

    def _decode_records(
        self, buf: bytes, pos: int, batches: list[Sequence[Event]]
    ) -> tuple[int, str | None, int | None]:
        """Decode the ordinary records from ``pos`` into ``batches``; return where they end, and why they stopped.

        This loop is the start-up time of the service, so it is written for
        speed. A PUT or DELETE (bare, or attributed: the common record) is read
        byte by byte in place, a C array access each in the compiled build, and
        appended to the open :class:`PlainWrites`; its origin, shared by a batch's
        records, is compared in place and decoded once. Any other record is
        decoded apart, into a list of events.
        """
        size = len(buf)
        checksum_of = crc32
        max_length = MAX_PAYLOAD_BYTES
        head_size = _HEAD_SIZE  # locals: a module's name is a dictionary lookup at each use, compiled or not
        min_payload = _MIN_PAYLOAD
        attributed = _ATTRIBUTED
        origin_size = _ORIGIN.size
        sequence = self.next_sequence
        # Any, the origins: typed as tuples, the compiled build would unbox each and box a new copy per record.
        origin: Any = self._origin
        last_origin = self._origin_bytes
        run: PlainWrites | None = None
        keys: list[str] = []  # the open run's lists
        values: list[bytes | None] = []
        origins: list[Origin | None] = []
        events: list[Event] | None = None
        failure = None
        search_from: int | None = None
        native = _native_decode
        tried = -1  # where the C loop last stopped: the record there is this loop's to judge
        while size - pos >= head_size:
            if native is not None and pos != tried:
                if run is None:
                    fresh = PlainWrites(sequence)
                    after = native(
                        buf, pos, sequence, max_length, fresh.keys, fresh.values, fresh.origins, last_origin, origin
                    )
                    if after != pos:
                        events = None
                        run = fresh
                        batches.append(run)
                        keys, values, origins = run.keys, run.values, run.origins
                        sequence += len(keys)
                else:
                    before = len(keys)
                    after = native(buf, pos, sequence, max_length, keys, values, origins, last_origin, origin)
                    sequence += len(keys) - before
                tried = pos = after
                continue
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16 | buf[pos + 3] << 24
            if length < min_payload or length > max_length:
                failure = f"record length {length} is impossible"
                search_from = pos + 1
                break
            start = pos + 8
            end = start + length
            if end > size:
                break
            checksum = buf[pos + 4] | buf[pos + 5] << 8 | buf[pos + 6] << 16 | buf[pos + 7] << 24
            if checksum_of(buf[start:end]) != checksum:
                failure = "checksum mismatch"
                search_from = end
                break
            seq = (
                buf[pos + 8] | buf[pos + 9] << 8 | buf[pos + 10] << 16 | buf[pos + 11] << 24
                | (buf[pos + 12] | buf[pos + 13] << 8 | buf[pos + 14] << 16 | buf[pos + 15] << 24) << 32
            )  # fmt: skip
            code = buf[pos + 16]
            key_length = buf[pos + 17] | buf[pos + 18] << 8 | buf[pos + 19] << 16 | buf[pos + 20] << 24
            if seq == sequence:
                kind = code  # the plain PUT or DELETE's, bare or inside an attributed record
                key_start = pos + head_size if code == 1 or code == 2 else -1
                name_length = key_length
                record_origin: Any = None
                if code == attributed:
                    body = pos + head_size
                    inner = body + origin_size + key_length  # key_length is the principal's
                    if inner + min_payload <= end:
                        kind = buf[inner + 8]
                        inner_seq = (
                            buf[inner] | buf[inner + 1] << 8 | buf[inner + 2] << 16 | buf[inner + 3] << 24
                            | (buf[inner + 4] | buf[inner + 5] << 8 | buf[inner + 6] << 16 | buf[inner + 7] << 24) << 32
                        )  # fmt: skip
                        if (kind == 1 or kind == 2) and inner_seq == seq:
                            # A batch's records share one origin: its bytes compared in place, decoded once.
                            if inner - body != len(last_origin) or not buf.startswith(last_origin, body):
                                last_origin = buf[body:inner]
                                at, reason = _ORIGIN.unpack_from(last_origin)
                                found: Any = _origin(last_origin[origin_size:], at, reason)
                                if isinstance(found, str):
                                    failure = found
                                    break
                                origin = found
                            record_origin = origin
                            name_length = (
                                buf[inner + 9] | buf[inner + 10] << 8 | buf[inner + 11] << 16 | buf[inner + 12] << 24
                            )
                            key_start = inner + min_payload
                if key_start >= 0 and (key_end := key_start + name_length) <= end and (kind == 1 or key_end == end):
                    try:
                        key = buf[key_start:key_end].decode()
                    except UnicodeDecodeError:
                        failure = "key is not valid UTF-8"
                        break
                    if run is None:  # a run starts: the events before it are a batch of their own
                        events = None
                        run = PlainWrites(seq)
                        batches.append(run)
                        keys, values, origins = run.keys, run.values, run.origins  # one attribute lookup per run
                    keys.append(key)
                    values.append(buf[key_end:end] if kind == 1 else None)
                    origins.append(record_origin)
                    sequence += 1
                    pos = end
                    continue
            if code > 2:  # an expiring PUT, a lease record, any other attributed record: rare, decoded apart
                decoded = _decode_extended(buf, pos, end, seq, code, key_length)
                if isinstance(decoded, str):
                    failure = decoded
                    break
                if seq != sequence:
                    failure = f"sequence {seq} where {sequence} was expected"
                    break
            else:  # a PUT or DELETE out of order, malformed, or a DELETE with a value (never written by tuco)
                key_end = pos + head_size + key_length
                if key_end > end or code == 0:
                    failure = f"malformed record (type {code}, key length {key_length})"
                    break
                if seq != sequence:
                    failure = f"sequence {seq} where {sequence} was expected"
                    break
                try:
                    key = buf[pos + head_size : key_end].decode()
                except UnicodeDecodeError:
                    failure = "key is not valid UTF-8"
                    break
                decoded = Event(seq, EventType(code), key, buf[key_end:end])
            if events is None:
                run = None
                events = []
                batches.append(events)
            events.append(decoded)
            sequence += 1
            pos = end
        self.next_sequence = sequence
        self._origin = origin
        self._origin_bytes = last_origin
        return pos, failure, search_from

    def _decode_entries(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, str | None, int | None]:
        """Decode the compacted entries of ``buf`` from ``pos``; return where they end, and why they stopped.

        The section ends at the first record of another type (left to the
        ordinary loop, which judges it), so a failure here is always an entry's.
        """
        size = len(buf)
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
            if crc32(buf[pos + 8 : end]) != checksum:
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
                events.append(
                    new(Event, (seq, EventType.LEASE_GRANT, "", owner, 0, 0, Lifetime(deadline, seq, ttl), None))
                )
                count += 1
                last = seq
                pos = end
                continue
            create_revision, version = unpack_revisions(buf, pos + _HEAD_SIZE)
            key_start = pos + _ENTRY_HEAD_SIZE
            lifetime = None
            if code in (_EXPIRING_ENTRY, _SHARED_EXPIRING_ENTRY):
                lifetime = Lifetime(*_PAIR.unpack_from(buf, key_start))
                key_start += _PAIR.size
            key_end = key_start + key_length
            if key_end > end:
                failure = f"malformed entry (key length {key_length})"
                break
            if not (last < seq < below or (code >= _SHARED_ENTRY and seq == last > 0)):  # shared: one transaction's
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
            events.append(new(Event, (seq, put, key, buf[key_end:end], create_revision, version, lifetime, None)))
            count += 1
            last = seq
            pos = end
        self._last_entry = last
        self.entries += count
        return pos, failure, search_from


def _missing_bytes(pending: bytes) -> int:
    """The bytes that would complete the record ``pending`` starts, by the length its frame declares; 0 if unknown.

    Unknown while the length itself is incomplete, or when it is impossible (the decoder then judges it).
    """
    if len(pending) < _FRAME.size:
        return 0
    length: int = _LENGTH.unpack_from(pending)[0]
    if length < _MIN_PAYLOAD or length > _MAX_ENTRY:
        return 0
    return _FRAME.size + length - len(pending)


def _decode_token_entry(
    buf: bytes, pos: int, size: int, length: int, checksum: int, seq: int, key_length: int, last: int, below: int
) -> Event | tuple[str, int | None] | None:
    """A compacted token entry; None if incomplete, ``(why, search_from)`` if bad."""
    if length < _MIN_PAYLOAD or length > _MAX_ENTRY:
        return f"record length {length} is impossible", pos + 1
    end = pos + 8 + length
    if end > size:
        return None
    if crc32(buf[pos + 8 : end]) != checksum:
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
    if code == _ATTRIBUTED:
        return _decode_attributed(buf, body, end, seq, key_length)
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
    if code == _TXN:
        if key_length:
            return f"malformed record (type {code}, key length {key_length})"
        value = buf[body:end]
        try:
            decode_writes(seq, value)
        except LogFormatError as exc:
            return str(exc)
        return Event(seq, EventType.TXN, "", value)
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


_ORIGINS: dict[tuple[bytes, int, int], Origin] = {}
"""Origins decoded lately, by their bytes, moment and reason: replay shares one per batch (bounded)."""
_MAX_ORIGINS = 4096


_PRINCIPALS: dict[bytes, str] = {}
"""Principals decoded lately, by their bytes: one string per principal however many origins name it (bounded)."""


def _origin(by: bytes, at: int, reason: int) -> Origin | str:
    """The origin of these bytes, moment and reason, shared with the records lately decoded with it; a string if bad."""
    named = (by, at, reason)
    # Any: the very object cached. Typed as a tuple, the compiled build holds it unboxed and hands out a new copy.
    origin: Any = _ORIGINS.get(named)
    if origin is not None:
        return origin  # type: ignore[no-any-return]
    if reason >= len(REASONS):
        return f"malformed origin (reason {reason})"
    principal = _PRINCIPALS.get(by)
    if principal is None:
        try:
            principal = by.decode()
        except UnicodeDecodeError:
            return "the origin's principal is not valid UTF-8"
        if len(_PRINCIPALS) >= _MAX_ORIGINS:
            _PRINCIPALS.clear()
        _PRINCIPALS[by] = principal
    if len(_ORIGINS) >= _MAX_ORIGINS:
        _ORIGINS.clear()
    origin = new_origin(principal, at, reason)  # boxed once, here: the cached object is the one returned
    _ORIGINS[named] = origin
    return origin  # type: ignore[no-any-return]


def _decode_attributed(buf: bytes, body: int, end: int, seq: int, by_length: int) -> Event | str:
    """A record wrapped with its origin: the origin, then the inner record decoded as it would be alone."""
    inner = body + _ORIGIN.size + by_length
    if inner + _MIN_PAYLOAD > end:
        return f"malformed record (type {_ATTRIBUTED}, by length {by_length})"
    at, reason = _ORIGIN.unpack_from(buf, body)
    origin = _origin(bytes(buf[body + _ORIGIN.size : inner]), at, reason)
    if isinstance(origin, str):
        return origin
    inner_seq, code, key_length = _PAYLOAD.unpack_from(buf, inner)
    if inner_seq != seq or code == _ATTRIBUTED:
        return f"malformed attributed record (inner type {code}, sequence {inner_seq})"
    if code == 1 or code == 2:  # a plain PUT or DELETE (the common case): read in place
        key_end = inner + _PAYLOAD.size + key_length
        if key_end > end:
            return f"malformed record (type {code}, key length {key_length})"
        try:
            key = buf[inner + _PAYLOAD.size : key_end].decode()
        except UnicodeDecodeError:
            return "key is not valid UTF-8"
        return Event(seq, EventType(code), key, buf[key_end:end], 0, 0, None, origin)
    framed = bytes(_FRAME.size) + buf[inner:end]  # the inner payload as if it were framed alone
    if code > 2:
        decoded = _decode_extended(framed, 0, len(framed), seq, code, key_length)
        if isinstance(decoded, str):
            return decoded
    else:
        key_end = _HEAD_SIZE + key_length
        if code == 0 or key_end > len(framed):
            return f"malformed record (type {code}, key length {key_length})"
        try:
            key = framed[_HEAD_SIZE:key_end].decode()
        except UnicodeDecodeError:
            return "key is not valid UTF-8"
        decoded = Event(seq, EventType(code), key, framed[key_end:])
    return decoded._replace(origin=origin)


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
