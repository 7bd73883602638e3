"""Types of tuco.core._native, the C extension of the compiled build (``_native.c``); the pure build has none."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")

def crc32(data: bytes, /) -> int: ...
def decode_plain(
    buf: bytes,
    pos: int,
    sequence: int,
    max_length: int,
    keys: list[str],
    values: list[bytes | None],
    origins: list[Any],
    origin_bytes: bytes,
    origin: Any,
    /,
) -> int: ...
def apply_plain(
    data: dict[str, tuple[bytes, int, int, int]],
    keys: list[str],
    values: list[bytes | None],
    first_sequence: int,
    entry_bytes: int,
    /,
) -> int: ...
def untracked(t: _T, /) -> _T: ...
def render_read(
    head: bytes, etag: int, revision: int, created: int, version: int, date_tail: bytes, body: bytes, /
) -> bytes: ...
def render_written(head: bytes, etag: int, revision: int, date_tail: bytes, /) -> bytes: ...
def find_byte(data: bytes, byte: int, /) -> int: ...
def plain_segment(segment: bytes, /) -> bool: ...
def encode_plain(
    events: Sequence[Any], crc32: Callable[[bytes, int], int], split_bytes: int, /
) -> tuple[list[bytes], bool]: ...
def asgi_read_headers(
    pairs: list[tuple[bytes, bytes]], length: int, etag: int, revision: int, created: int, version: int, /
) -> list[tuple[bytes, bytes]]: ...
