"""The compiled build's C loops (``tuco.core._native``) against the Python loops they stand in for.

The C decoder takes only the plain records the Python loop would take the same way and leaves the rest to
it; the C apply makes the entries ``Store._apply_plain`` makes. Here both run on the same input, the Python
loop with the C one switched off, and must agree on everything: events, failure, offsets, entries, bytes.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tuco
from tests import build
from tests.needs import command, unavailable
from tuco import _build
from tuco.core import _decoder, _untrack, codec
from tuco.core import store as store_module
from tuco.core.codec import SPLIT_VALUE_BYTES, RecordDecoder, encode_event, encode_record
from tuco.core.events import Event, EventType, PlainWrites
from tuco.core.origin import Reason, new_origin, stamped
from tuco.core.store import Store
from tuco.http import _fast, _wire
from tuco.http import asgi as asgi_module

compiled_only = pytest.mark.skipif(build.EXPECTED != "compiled", reason="the pure build has no C extension")

ORIGINS = [None, new_origin("alice", 1_700_000_000_000), new_origin("böb", 5), new_origin("alice", 9, Reason.DELETED)]
KEYS = ["a", "b", "é", "🔑", "k" * 40]

writes = st.lists(
    st.tuples(
        st.sampled_from([EventType.PUT, EventType.PUT, EventType.DELETE]),
        st.sampled_from(KEYS),
        st.binary(max_size=40),
        st.integers(0, len(ORIGINS) - 1),
    ),
    max_size=30,
)


def _log(items: list[tuple[EventType, str, bytes, int]]) -> bytes:
    return b"".join(
        encode_event(Event(seq, kind, key, value if kind is EventType.PUT else b"", origin=ORIGINS[n]))
        for seq, (kind, key, value, n) in enumerate(items, start=1)
    )


def _decode(data: bytes, sizes: list[int]) -> tuple[list[list[Event]], Any, int, int, int]:
    decoder = RecordDecoder(start_offset=0)
    batches: list[list[Event]] = []
    pos = 0
    for size in [*sizes, len(data)]:
        batches.extend(list(batch) for batch in decoder.feed_batches(data[pos : pos + size]))
        pos += size
    return batches, decoder.failure, decoder.offset, decoder.next_sequence, decoder.pending_bytes


def test_the_build_has_the_c_loops_exactly_when_it_is_compiled() -> None:
    """The compiled build ships tuco.core._native and uses it; the pure build has none and runs the Python loops."""
    found = importlib.util.find_spec("tuco.core._native") is not None
    assert found == (build.EXPECTED == "compiled")
    assert (_decoder._native_decode is not None) == found
    assert (store_module._native_apply is not None) == found
    assert (_untrack.untracked is not None) == found
    assert (codec._native_encode is not None) == found
    assert (
        all(f is not None for f in (_fast.render_read, _fast.render_written, _fast.find_byte, _fast.plain_segment))
        == found
    )
    assert (
        all(f is None for f in (_fast.render_read, _fast.render_written, _fast.find_byte, _fast.plain_segment)) != found
    )


@compiled_only
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_the_c_checksum_is_zlibs(data: bytes) -> None:
    from tuco.core._native import crc32

    assert crc32(data) == zlib.crc32(data)
    assert crc32(bytes(range(256)) * 40) == zlib.crc32(bytes(range(256)) * 40)


@compiled_only
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=writes, data=st.data())
def test_the_c_decoder_and_the_python_loop_agree_on_any_damaged_log(
    items: list[tuple[EventType, str, bytes, int]], data: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain writes, bare and attributed by several origins, with one byte damaged and fed in any chunks."""
    encoded = bytearray(_log(items))
    if encoded and data.draw(st.booleans()):
        encoded[data.draw(st.integers(0, len(encoded) - 1))] ^= data.draw(st.integers(1, 255))
    log = bytes(encoded)
    sizes = data.draw(st.lists(st.integers(1, max(1, len(log))), max_size=8))
    native = _decode(log, sizes)
    with monkeypatch.context() as patched:
        patched.setattr(_decoder, "_native_decode", None)
        python = _decode(log, sizes)
    assert native == python


@compiled_only
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=writes, garbage=st.binary(min_size=1, max_size=200), cut=st.integers(0, 1000))
def test_the_c_decoder_and_the_python_loop_agree_on_any_bytes_after_good_records(
    items: list[tuple[EventType, str, bytes, int]], garbage: bytes, cut: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Good records cut anywhere, then any bytes: lengths past the end, huge key lengths; nothing read past the end."""
    good = _log(items)
    log = good[: min(cut, len(good))] + garbage
    native = _decode(log, [])
    with monkeypatch.context() as patched:
        patched.setattr(_decoder, "_native_decode", None)
        python = _decode(log, [])
    assert native == python


@compiled_only
def test_the_c_decoder_leaves_every_other_record_to_the_python_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key that is not UTF-8, a DELETE with a value, a new origin, a sequence gap: the same verdicts either way."""
    good = encode_event(Event(1, EventType.PUT, "a", b"1", origin=ORIGINS[1]))
    payload = struct.pack("<QBI", 2, 1, 1) + b"\xff" + b"2"  # a PUT whose one-byte key is not UTF-8
    not_utf8 = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    cases = {
        "not utf-8": (good + not_utf8, "key is not valid UTF-8"),
        "new origin": (good + encode_event(Event(2, EventType.PUT, "b", b"2", origin=ORIGINS[2])), None),
        "gap": (
            good + encode_event(Event(3, EventType.PUT, "b", b"2", origin=ORIGINS[1])),
            "sequence 3 where 2 was expected",
        ),
        "delete with a value": (good + encode_record(2, EventType.DELETE, "b", b"x"), None),  # an event, decoded apart
    }
    for name, (log, reason) in cases.items():
        native = _decode(log, [])
        with monkeypatch.context() as patched:
            patched.setattr(_decoder, "_native_decode", None)
            assert native == _decode(log, []), name
        failure = native[1]
        assert (failure.reason if failure else None) == reason, name
        assert native[2] == (len(good) if reason else len(log)), name


@compiled_only
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=writes, split=st.integers(0, 30))
def test_the_c_apply_makes_the_python_loops_entries(
    items: list[tuple[EventType, str, bytes, int]], split: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs applied one after the other: the same entries (values, revisions, versions) and the same bytes."""
    runs = [PlainWrites(1), PlainWrites(min(split, len(items)) + 1)]
    for i, (kind, key, value, _) in enumerate(items):
        run = runs[0] if i < split else runs[1]
        run.keys.append(key)
        run.values.append(value if kind is EventType.PUT else None)
        run.origins.append(None)
    native, python = Store(), Store()
    for run in runs:
        native.apply_batch(run)
    with monkeypatch.context() as patched:
        patched.setattr(store_module, "_native_apply", None)
        for run in runs:
            python.apply_batch(run)
    assert dict(native._data) == dict(python._data)
    assert (native.bytes, native.last_sequence) == (python.bytes, python.last_sequence)


@compiled_only
def test_the_c_apply_leaves_the_entries_untracked_by_the_collector() -> None:
    """Entries of bytes and ints, untracked as a collection would leave them: the first one after a replay is short."""
    run = PlainWrites(1)
    for i in range(1000):
        run.keys.append(f"key-{i % 600}")
        run.values.append(b"v" * (i % 9))
        run.origins.append(None)
    store = Store()
    store.apply_batch(run)
    assert len(store._data) == 600
    assert not any(gc.is_tracked(entry) for entry in store._data.values())
    assert store._data["key-599"] == (b"v" * (599 % 9), 600, 600, 1)
    assert store._data["key-0"] == (b"v" * (600 % 9), 1, 601, 2)


@compiled_only
def test_c_untracked_follows_cpythons_rule_for_tuples() -> None:
    """A tuple of bytes, str, ints, None and untracked tuples leaves the collector; one holding anything else stays.

    Anything else may be (or later become) part of a cycle, which an untracked tuple would hide from the
    collector: a list, a dict even while empty (CPython tracks a dict once it holds a container), a tuple
    still tracked, an instance. Tuples are made at run time here: constant ones are never tracked.
    """
    from tuco.core._native import untracked

    value = bytes([118]) * 3
    entry = (value, len(value), 2, None)
    assert gc.is_tracked(entry)
    assert untracked(entry) is entry and not gc.is_tracked(entry)
    origin = ("alice" + str(len(value)), 1234, 0)
    change = (4, 1, "key", value, entry, origin)
    assert untracked(change) is change and gc.is_tracked(change)  # its origin is still tracked
    untracked(origin)
    assert untracked(change) is change and not gc.is_tracked(change)
    others: list[object] = [[], {}, {"a": 1}, (value, []), Event(1, EventType.PUT, "a", value), Store()]
    for other in others:
        held = (value, other)
        assert untracked(held) is held and gc.is_tracked(held), other
    named = Event(1, EventType.PUT, "a", value)  # a tuple subclass: CPython never untracks one either
    assert untracked(named) is named and gc.is_tracked(named)
    mutable = [value]
    assert untracked(mutable) is mutable and gc.is_tracked(mutable)


@compiled_only
def test_a_write_leaves_its_entry_its_change_and_its_origin_untracked_at_once() -> None:
    """The live write path's tuples leave the collector as they are made, not at the next young collection.

    Under steady writes those were what each young collection visited (bench/instructions.py: 61,599
    instructions a PUT before, 61,068 after).
    """
    gc.disable()  # no collection may untrack them in between
    try:
        origin = stamped(new_origin("ci-token", 0), 1234)
        store = Store()
        store.apply(Event(1, EventType.PUT, "a", bytes([49]), origin=origin))
        first = store._data["a"]
        store.apply(Event(2, EventType.PUT, "a", bytes([50]) * 2, origin=origin))
        second = store._data["a"]
        store.apply(Event(3, EventType.DELETE, "a", origin=origin))
        changes = store.history.changes_after(0, 10)
    finally:
        gc.enable()
    assert origin == ("ci-token", 1234, 0)
    assert (first, second) == ((b"1", 1, 1, 1), (b"22", 1, 2, 2))
    assert [change[:5] for change in changes] == [
        (1, 1, "a", b"1", None),
        (2, 1, "a", b"22", first),
        (3, 2, "a", b"", second),
    ]
    assert [gc.is_tracked(t) for t in (origin, first, second, *changes)] == [False] * 6


SIZES = [0, 1, 100, SPLIT_VALUE_BYTES - 1, SPLIT_VALUE_BYTES, SPLIT_VALUE_BYTES + 1, 65536]
batches = st.lists(
    st.tuples(
        st.sampled_from([EventType.PUT, EventType.PUT, EventType.DELETE]),
        st.sampled_from(KEYS),
        st.sampled_from(SIZES),
        st.integers(0, 255),
        st.integers(0, len(ORIGINS) - 1),
    ),
    min_size=1,
    max_size=12,
)


@compiled_only
@settings(max_examples=200, deadline=None)
@given(items=batches, first=st.sampled_from([1, 255, 2**32 + 1, 2**63]))
def test_the_c_encoder_writes_the_python_loops_records(
    items: list[tuple[EventType, str, int, int, int]], first: int
) -> None:
    """A batch's records, encoded in C, are the Python loop's buffers, large values split off alike, and read back."""
    events = [
        Event(seq, kind, key, bytes([fill]) * size if kind is EventType.PUT else b"", origin=ORIGINS[n])
        for seq, (kind, key, size, fill, n) in enumerate(items, start=first)
    ]
    encoded = codec.encode_records(events)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "_native_encode", None)
        assert encoded == codec.encode_records(events)
    parts, split = encoded
    assert split == any(len(e.value) >= SPLIT_VALUE_BYTES for e in events)
    assert [p for p in parts if len(p) >= SPLIT_VALUE_BYTES and p in {e.value for e in events}] == [
        e.value for e in events if len(e.value) >= SPLIT_VALUE_BYTES
    ]
    decoder = RecordDecoder(first_sequence=first, start_offset=0)
    decoded = [event for batch in decoder.feed_batches(b"".join(parts)) for event in batch]
    assert decoder.failure is None and decoder.pending_bytes == 0
    assert [(e.sequence, e.type, e.key, e.value, e.origin) for e in decoded] == [
        (e.sequence, e.type, e.key, e.value, e.origin) for e in events
    ]


@compiled_only
def test_the_c_encoder_leaves_a_keys_str_as_it_found_it() -> None:
    """No UTF-8 copy is cached on a non-ASCII key or principal: the store keeps the key, for as long as it lives.

    (CPython caches a str's UTF-8 on the str the first time C asks for it that way: bytes a key would carry
    beyond what the store's memory accounting counts, on every key written once.)
    """
    key = "clé-" + str(len(KEYS))  # made at run time: a literal's str may have its UTF-8 cached already
    by = "böb-" + str(len(KEYS))
    sizes = (sys.getsizeof(key), sys.getsizeof(by))
    parts, _ = codec.encode_records([Event(1, EventType.PUT, key, b"v", origin=new_origin(by, 5))])
    assert (sys.getsizeof(key), sys.getsizeof(by)) == sizes
    assert key.encode() in parts[0] and by.encode() in parts[0]


@compiled_only
def test_the_c_encoder_refuses_what_the_python_loop_refuses() -> None:
    """A key or principal that is not UTF-8 (a lone surrogate) fails alike; a value must be bytes."""
    from tuco.core._native import encode_plain

    for event in (
        Event(1, EventType.PUT, "\ud800", b"v"),
        Event(1, EventType.PUT, "k", b"v", origin=new_origin("\udcff", 1)),
    ):
        with pytest.raises(UnicodeEncodeError):
            codec.encode_records([event])
        with pytest.MonkeyPatch.context() as patch, pytest.raises(UnicodeEncodeError):
            patch.setattr(codec, "_native_encode", None)
            codec.encode_records([event])
    with pytest.raises(TypeError):
        encode_plain([Event(1, EventType.PUT, "k", bytearray(b"v"))], zlib.crc32, SPLIT_VALUE_BYTES)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        encode_plain([Event(2**64, EventType.PUT, "k", b"v")], zlib.crc32, SPLIT_VALUE_BYTES)
    assert encode_plain([], zlib.crc32, SPLIT_VALUE_BYTES) == ([], False)


NUMBERS = [0, 1, 9, 10, 99, 100, 12345, 2**31, 2**32 + 7, 2**63 - 1, -1, -10, -(2**63)]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
TAIL = b"\r\nDate: Sun, 06 Dec 2026 22:40:10 GMT\r\n\r\n"


@compiled_only
@pytest.mark.parametrize("body", [b"", b"v", bytes(range(256)) * 64])
def test_the_c_answers_are_the_bytes_of_the_formats_they_stand_in_for(body: bytes) -> None:
    """A key's read and a write's answer, rendered in C, byte for byte what _wire's two % formats render."""
    from tuco.core._native import render_read, render_written

    for n, number in enumerate(NUMBERS):
        etag, revision, created, version = number, NUMBERS[n - 1], NUMBERS[n - 2], NUMBERS[n - 3]
        expected = _wire._READ % (HEAD, etag, revision, created, version, len(body), TAIL, body)
        assert render_read(HEAD, etag, revision, created, version, TAIL, body) == expected
        assert render_written(HEAD, etag, revision, TAIL) == _wire._WRITTEN % (HEAD, etag, revision, TAIL)
    assert render_read(b"", True, 2, 3, 4, b"", body) == _wire._READ % (b"", True, 2, 3, 4, len(body), b"", body)
    read = render_read(HEAD, 7, 8, 3, 2, TAIL, b"abc")
    assert read == (
        HEAD + b'ETag: "7"\r\nX-Tuco-Revision: 8\r\nX-Tuco-Create-Revision: 3\r\nX-Tuco-Version: 2\r\n'
        b"Content-Length: 3" + TAIL + b"abc"
    )
    assert render_written(HEAD, 7, 8, TAIL) == HEAD + b'ETag: "7"\r\nX-Tuco-Revision: 8\r\nContent-Length: 0' + TAIL


@compiled_only
def test_the_c_answers_leave_what_they_cannot_render_to_the_formats() -> None:
    """An int over 64 bits is OverflowError, anything but an int or exact bytes TypeError: _wire then formats."""
    from tuco.core._native import render_read, render_written

    for number in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(OverflowError):
            render_read(HEAD, 1, number, 1, 1, TAIL, b"")
        with pytest.raises(OverflowError):
            render_written(HEAD, number, 1, TAIL)
    bad: list[tuple[Any, ...]] = [
        (HEAD, None, 1, 1, 1, TAIL, b""),
        (HEAD, 1, 1, 1.5, 1, TAIL, b""),
        (bytearray(HEAD), 1, 1, 1, 1, TAIL, b""),
        (HEAD, 1, 1, 1, 1, TAIL, memoryview(b"x")),
        (HEAD, 1, 1, 1, 1, TAIL),
    ]
    for args in bad:
        with pytest.raises(TypeError):
            render_read(*args)
    with pytest.raises(TypeError):
        render_written(HEAD, 1, "1", TAIL)  # type: ignore[arg-type]


@compiled_only
def test_the_c_asgi_headers_are_the_python_ones() -> None:
    """The ASGI app's header list of a key's read, built in C: the list the Python code builds, pair for pair."""
    from tuco.core._native import asgi_read_headers

    pairs = [(b"content-type", b"application/octet-stream"), (b"cache-control", b"no-store")]
    for n, number in enumerate(NUMBERS):
        etag, revision, created, version = number, NUMBERS[n - 1], NUMBERS[n - 2], NUMBERS[n - 3]
        length = n * 1000
        assert asgi_read_headers(pairs, length, etag, revision, created, version) == [
            (b"content-length", b"%d" % length),
            *pairs,
            (b"etag", b'"%d"' % etag),
            (b"x-tuco-revision", b"%d" % revision),
            (b"x-tuco-create-revision", b"%d" % created),
            (b"x-tuco-version", b"%d" % version),
        ]
    assert asgi_read_headers([], 0, 1, 2, 3, 4)[1:] == [
        (b"etag", b'"1"'),
        (b"x-tuco-revision", b"2"),
        (b"x-tuco-create-revision", b"3"),
        (b"x-tuco-version", b"4"),
    ]
    with pytest.raises(OverflowError):
        asgi_read_headers(pairs, 1, 1, 1, 2**64, 1)
    with pytest.raises(TypeError):
        asgi_read_headers(pairs, 1, 1, 1, 1, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        asgi_read_headers(tuple(pairs), 1, 1, 1, 1, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("number", [2**64, -(2**70)])
def test_an_asgi_read_with_an_int_over_64_bits_has_the_formats_headers(number: int) -> None:
    """Both builds: what C cannot render, the ASGI app formats, as it always did."""
    from tuco.http.messages import Response

    read = Response(200, b"abc", b"application/octet-stream", (), number, 5, 3, number)
    assert asgi_module._head(read) == [
        (b"content-length", b"3"),
        (b"content-type", b"application/octet-stream"),
        (b"etag", b'"%d"' % number),
        (b"x-tuco-revision", b"5"),
        (b"x-tuco-create-revision", b"3"),
        (b"x-tuco-version", b"%d" % number),
    ]


@pytest.mark.parametrize("number", [2**64, -(2**70)])
def test_an_answer_with_an_int_over_64_bits_is_rendered_by_the_format(number: int) -> None:
    """Both builds: what C cannot render, _wire formats, to the same bytes the format always gave."""
    from tuco.http.messages import Response

    out: list[bytes] = []
    read = Response(200, b"abc", b"application/octet-stream", (), number, 5, 3, number)
    _wire.serialise(out, read, _wire.KEEP, False, b"", TAIL)
    written = Response(201, b"", None, (), number, number)
    _wire.serialise(out, written, _wire.KEEP, False, b"", TAIL)
    assert out == [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b'ETag: "%d"\r\nX-Tuco-Revision: 5\r\nX-Tuco-Create-Revision: 3\r\nX-Tuco-Version: %d\r\n'
        b"Content-Length: 3%babc" % (number, number, TAIL),
        b'HTTP/1.1 201 Created\r\nETag: "%d"\r\nX-Tuco-Revision: %d\r\nContent-Length: 0%b' % (number, number, TAIL),
    ]


@compiled_only
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=40) | st.sampled_from([b"", b".", b"..", b"...", b"%", b"/", b"a/b", b"%2F", b".a"]))
def test_the_c_byte_search_and_segment_check_are_pythons(data: bytes) -> None:
    """find_byte is bytes.find of one byte; plain_segment the key route's own check of its segment."""
    from tuco.core._native import find_byte, plain_segment

    for byte in (0, 0x25, 0x2F, 0x2E, 0x3F, 0x76, 0xFF):
        assert find_byte(data, byte) == data.find(bytes([byte]))
    assert plain_segment(data) == (bool(data) and b"%" not in data and b"/" not in data and data not in (b".", b".."))
    with pytest.raises(ValueError):
        find_byte(data, 256)
    with pytest.raises(TypeError):
        plain_segment(bytearray(data))  # type: ignore[arg-type]


@compiled_only
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_c_loops_read_and_write_nothing_out_of_bounds_under_the_address_sanitizer(tmp_path: Path) -> None:
    """_native.c built with AddressSanitizer and UBSan into a copy of this build; the tests above run against it.

    Every object is allocated by malloc (``PYTHONMALLOC=malloc``), so a read one byte past a record's buffer
    stops the run: checked once by planting such a read (the run then ends in ``heap-buffer-overflow``).
    """
    gcc = command("gcc", "Debian's gcc: the compiled build needs it already")
    runtimes = [
        subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout.strip()
        for name in ("libasan.so", "libubsan.so")
    ]
    if not all(Path(runtime).is_absolute() for runtime in runtimes):
        unavailable(f"gcc has no sanitizer runtimes ({' '.join(runtimes)}): Debian's libasan8 and libubsan1")
    installed = Path(tuco.__file__).resolve().parent.parent
    copy = tmp_path / "site"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("__pycache__", "bin"))
    (extension,) = (copy / "tuco" / "core").glob("_native.*.so")
    sources = Path(__file__).resolve().parents[2] / "src" / "tuco" / "core" / "_native.c"
    include = sysconfig.get_paths()["include"]
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    subprocess.run([gcc, *flags, "-shared", "-fPIC", f"-I{include}", str(sources), "-o", str(extension)], check=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "PYTHONMALLOC": "malloc",
        "LD_PRELOAD": " ".join(runtimes),
        "ASAN_OPTIONS": "detect_leaks=0",
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-m", "not slow", __file__],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = run.stdout + run.stderr
    assert "AddressSanitizer" not in output and "runtime error" not in output, output[-4000:]
    assert run.returncode == 0, output[-4000:]
    assert re.search(r"\b23 passed\b", output), output[-2000:]  # every test of this module but this one


@compiled_only
def test_an_installation_missing_the_c_module_says_it_is_partly_compiled(tmp_path: Path) -> None:
    """Without the C module, tuco still runs (its Python loops), and ``tuco --version``'s build says what is missing."""
    installed = Path(tuco.__file__).resolve().parent.parent
    copy = tmp_path / "site"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("__pycache__", "bin"))
    for extension in (copy / "tuco" / "core").glob("_native.*.so"):
        extension.unlink()
    probe = (
        "from tuco._build import COMPILED, NATIVE, build; from tuco.core import _decoder, store;"
        "print(build(), len(COMPILED) + len(NATIVE), _decoder._native_decode, store._native_apply)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True
    )
    total = len(_build.COMPILED) + len(_build.NATIVE)
    assert run.stdout == f"partly compiled ({total - 1} of {total} modules) {total} None None\n", run.stderr
