"""Typed parsing of what a request carries: keys, conditions, limits, page tokens, durations, ids, watch selectors.

Each function takes raw bytes (or the request) and returns a typed value, or raises the
:class:`~tuco.errors.InvalidRequestError` subclass a client is answered with; no handler parses by hand.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Final
from urllib.parse import unquote_to_bytes

from tuco.core.events import ABSENT, EXISTS, Precondition
from tuco.core.watch import Selector
from tuco.errors import (
    InvalidKeyError,
    InvalidPageTokenError,
    InvalidParameterError,
    InvalidPreconditionError,
    TucoError,
)
from tuco.http.messages import Request

__all__ = [
    "DEFAULT_PAGE_LIMIT",
    "DEFAULT_WAIT_SECONDS",
    "KEY_NOT_UTF8",
    "MAX_PAGE_LIMIT",
    "MAX_WAIT_SECONDS",
    "bounded",
    "decode_key",
    "decode_page_token",
    "encode_page_token",
    "flag",
    "grant_ttl",
    "lease_id",
    "page_limit",
    "parse_json",
    "parse_ttl",
    "precondition_of",
    "revision_param",
    "text_param",
    "wait_timeout",
    "wants_consistent",
    "watch_params",
]

_DOT_SEGMENTS = (b".", b"..")
_FOREIGN_TOKEN = (
    "the page token is not one this server issued: send next_page_token as it came, or start the listing again "
    "without page_token"
)
KEY_NOT_UTF8: Final = (
    "the key is not valid UTF-8 after percent-decoding: percent-encode the key's UTF-8 bytes (%C3%A9 for é)"
)

_TTL = re.compile(rb"(\d{1,12}(?:\.\d{1,3})?)(ms|s|m|h|d)?")
_TTL_UNITS_MS = {b"ms": 1, b"s": 1000, b"m": 60_000, b"h": 3_600_000, b"d": 86_400_000, None: 1000}
_MAX_LEASE_ID = (1 << 63) - 1
_MAX_REVISION = (1 << 63) - 1
"""The largest revision any log can reach: sequences are 64-bit signed integers (PostgreSQL's bigint)."""
_MAX_GRANT_BODY = 1024
MAX_WAIT_SECONDS = 300.0
DEFAULT_WAIT_SECONDS = 30.0
DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 1000
_TOKEN_VERSION = 1


def watch_params(request: Request, current: int) -> tuple[Selector, int]:
    """The selector and the revision after which the watch starts.

    ``Last-Event-ID: X`` (an EventSource reconnecting) wins: changes after X.
    Else ``start_revision=R``: changes at R and after. Else: changes after now.
    """
    prefix = text_param(request, b"prefix")
    raw_key = request.param(b"key")
    if raw_key is not None and request.param(b"prefix") is not None:
        raise InvalidParameterError("watch a prefix or a key, not both")
    selector = Selector(prefix)
    if raw_key is not None:
        key = text_param(request, b"key")
        if not key:
            raise InvalidParameterError("key must not be empty")
        selector = Selector(key=key)
    last_id = request.header(b"last-event-id")
    if last_id is not None and last_id.strip():
        value = last_id.strip()
        if not value.isdigit() or len(value) > 18:
            raise InvalidParameterError("Last-Event-ID must be a revision tuco sent (a whole number)")
        return selector, int(value)
    if request.param(b"start_revision") is not None:
        return selector, revision_param(request, b"start_revision") - 1
    return selector, current


def revision_param(request: Request, name: bytes) -> int:
    raw = request.param(name) or b""
    if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise InvalidParameterError(f"{name.decode()} must be a revision: a whole number from 1")
    return int(raw)


def wait_timeout(raw: bytes | None) -> float:
    """``30s``, ``500ms`` or plain seconds (``2.5``), at most MAX_WAIT_SECONDS."""
    if raw is None:
        return DEFAULT_WAIT_SECONDS
    scale = 1.0
    number = raw
    if raw.endswith(b"ms"):
        number, scale = raw[:-2], 0.001
    elif raw.endswith(b"s"):
        number = raw[:-1]
    whole, dot, fraction = number.partition(b".")
    if not whole.isdigit() or (dot and not fraction.isdigit()) or len(number) > 12:
        raise InvalidParameterError("timeout must be a duration such as 30s, 500ms or 2.5 (seconds)")
    seconds = float(number) * scale
    if seconds > MAX_WAIT_SECONDS:
        raise InvalidParameterError(f"timeout must be at most {MAX_WAIT_SECONDS:g}s")
    return seconds


def encode_page_token(revision: int, last_key: str, prefix: str) -> str:
    """An opaque token for the page after ``last_key`` of the listing of ``prefix`` pinned at ``revision``."""
    raw = json.dumps([_TOKEN_VERSION, revision, last_key, prefix], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def parse_json(body: bytes, refusal: TucoError) -> object:
    """``body`` as JSON, or ``refusal`` raised: malformed, not UTF-8, or nested deeper than the parser recurses
    (a RecursionError, which is not a ValueError: uncaught it was a 500 for a client's mistake)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise refusal from None


def decode_page_token(token: bytes) -> tuple[int, str, str]:
    """``(revision, last key, prefix)`` of a token this server issued; InvalidPageTokenError otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + b"=" * (-len(token) % 4))
        version, revision, last_key, prefix = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, RecursionError):  # RecursionError: nested past the parser
        raise InvalidPageTokenError(_FOREIGN_TOKEN) from None
    if (
        version != _TOKEN_VERSION
        or type(revision) is not int
        or revision < 0
        or not isinstance(last_key, str)
        or not isinstance(prefix, str)
    ):
        raise InvalidPageTokenError(_FOREIGN_TOKEN)
    return revision, last_key, prefix


def text_param(request: Request, name: bytes) -> str:
    raw = request.param(name)
    if raw is None:
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameterError(f"{name.decode()} is not valid UTF-8 after percent-decoding") from None


def page_limit(request: Request) -> int:
    raw = request.param(b"limit")
    if raw is None:
        return DEFAULT_PAGE_LIMIT
    if not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_PAGE_LIMIT:
        raise InvalidParameterError(f"limit must be a whole number from 1 to {MAX_PAGE_LIMIT}")
    return int(raw)


def flag(request: Request, name: bytes) -> bool:
    raw = request.param(name)
    if raw is None:
        return False
    value = raw.lower()
    if value in (b"", b"true", b"1", b"yes"):
        return True
    if value in (b"false", b"0", b"no"):
        return False
    raise InvalidParameterError(f"{name.decode()} must be true or false")


def precondition_of(request: Request) -> Precondition | None:
    """The condition of ``If-Match`` / ``If-None-Match``; InvalidPreconditionError for what tuco does not accept."""
    match = request.header(b"if-match")
    none_match = request.header(b"if-none-match")
    if match is None and none_match is None:
        return None
    if match is not None and none_match is not None:
        raise InvalidPreconditionError("send If-Match or If-None-Match, not both")
    name = b"if-match" if match is not None else b"if-none-match"
    if request.header_count(name) > 1:
        raise InvalidPreconditionError(f"send one {name.decode()} header with one entity tag")
    value = (match if match is not None else none_match or b"").strip()
    if none_match is not None:
        if value == b"*":
            return ABSENT
        raise InvalidPreconditionError('If-None-Match takes only "*" (create only if absent)')
    if value == b"*":
        return EXISTS
    if value.startswith(b"W/"):
        raise InvalidPreconditionError("weak entity tags are not accepted: tuco's ETags are strong")
    if b"," in value:
        raise InvalidPreconditionError("a list of entity tags is not accepted: send one")
    if len(value) > 2 and value[0] == value[-1] == 0x22 and value[1:-1].isdigit() and int(value[1:-1]) > 0:
        revision = int(value[1:-1])
        if revision > _MAX_REVISION:  # a client's mistake on every backend, decided before the log is asked
            raise InvalidPreconditionError(f"a revision is at most {_MAX_REVISION}: no key can be at this one")
        return Precondition(revision)
    raise InvalidPreconditionError('If-Match takes "*" or one ETag as tuco sends it: a revision in quotes, "12"')


def decode_key(segment: bytes) -> str:
    """Percent-decode the rest of a key path into a key, once (the length limit is the service's, on writes).

    ``a/b`` and ``a%2Fb`` name the same key. An empty segment and a ``.`` or ``..`` segment, as sent, are
    refused: proxies and clients merge slashes and resolve dot segments, so the key that would reach the
    store is not the one the caller typed; escaped (``%2F``, ``%2E``) they are the key's own bytes.
    """
    if b"/" in segment or segment in _DOT_SEGMENTS:
        _check_segments(segment)
    raw = unquote_to_bytes(segment) if b"%" in segment else segment
    if not raw:
        raise InvalidKeyError("the key is empty: put it after /v1/key/, e.g. /v1/key/app/config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyError(KEY_NOT_UTF8) from None


def _check_segments(path: bytes) -> None:
    for part in path.split(b"/"):
        if not part:
            raise InvalidKeyError(
                "the key path has an empty segment (a leading, doubled or trailing /), which proxies merge or drop; "
                "send each / of such a key as %2F, e.g. /v1/key/a%2F%2Fb"
            )
        if part in _DOT_SEGMENTS:
            raise InvalidKeyError(
                f"the key path has a {part.decode()!r} segment, which proxies and clients resolve away; "
                "send its dots as %2E, e.g. /v1/key/a/%2E%2E/b"
            )


def parse_ttl(raw: bytes, max_ms: int) -> int:
    """Milliseconds of ``30s``, ``500ms``, ``5m``, ``1h``, ``2d`` or a bare number of seconds; InvalidParameterError.

    Must come to at least 1 ms and at most ``max_ms``.
    """
    found = _TTL.fullmatch(raw.strip())
    if found is None:
        raise InvalidParameterError(
            "ttl must be a duration such as 30s, 500ms, 5m, 1h or 2d (a number alone is seconds)"
        )
    number, unit = found.groups()
    ms = round(float(number) * _TTL_UNITS_MS[unit])
    if not 1 <= ms <= max_ms:
        raise InvalidParameterError(f"ttl must be from 1 ms to {max_ms // 1000} s (TUCO_MAX_TTL_SECONDS)")
    return ms


def grant_ttl(body: bytes, max_ms: int) -> int:
    """The ttl of a grant's JSON body ``{"ttl": 30}`` (seconds, or a duration string like ``"30s"``)."""
    if len(body) > _MAX_GRANT_BODY:
        raise InvalidParameterError('the body must be a small JSON object such as {"ttl": 30}')
    payload = parse_json(body, InvalidParameterError('the body must be JSON such as {"ttl": 30}'))
    ttl = payload.get("ttl") if isinstance(payload, dict) else None
    if isinstance(ttl, str):
        return parse_ttl(ttl.encode(), max_ms)
    if type(ttl) is int or type(ttl) is float:
        if not ttl == ttl or ttl in (float("inf"), float("-inf")):  # NaN and infinities
            raise InvalidParameterError("ttl must be a finite number of seconds")
        scaled = ttl * 1000  # may overflow to infinity (1.7e308 seconds): compare before rounding
        ms = round(scaled) if abs(scaled) <= max_ms else max_ms + 1
        if not 1 <= ms <= max_ms:
            raise InvalidParameterError(f"ttl must be from 1 ms to {max_ms // 1000} s (TUCO_MAX_TTL_SECONDS)")
        return ms
    raise InvalidParameterError('the body must be JSON with a ttl in seconds, such as {"ttl": 30}')


def lease_id(raw: bytes, error: TucoError) -> int:
    """A lease id as granted (a positive integer); ``error`` for anything else."""
    if not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) <= _MAX_LEASE_ID:
        raise error
    return int(raw)


def wants_consistent(request: Request) -> bool:
    value = request.param(b"consistent")
    return value is not None and value.lower() in (b"", b"true", b"1", b"yes")


def bounded(raw: bytes | None, name: str, default: int, low: int, high: int) -> int:
    """A whole-number parameter from ``low`` to ``high`` (``default`` when absent); InvalidParameterError."""
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        raise InvalidParameterError(f"{name} must be a whole number from {low} to {high}")
    return int(raw)
