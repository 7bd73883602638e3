"""The web console: ``/ui/`` and its assets, from files inside the package (no network, no build step).

The assets hold no data (the console asks the API for it, with the user's
token), so the routes are public. Each asset is served under a name carrying
a hash of its bytes (``console.3f9a0c1d2e4b.js``) and may be cached for a
year; the page itself is always revalidated, so a new release is picked up
at once. Every answer carries a strict Content-Security-Policy: scripts and
styles from this origin only, no inline script, no framing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from typing import TYPE_CHECKING

from tuco.errors import NotFoundError
from tuco.http.answers import error_answer
from tuco.http.messages import Answer, Request, Response

if TYPE_CHECKING:
    from tuco.http.handlers._base import Context

__all__ = ["ASSETS", "CSP", "asset", "index", "versioned"]

CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The console's Content-Security-Policy: nothing inline, nothing from elsewhere, never in a frame."""

ASSETS: dict[str, bytes] = {
    "console.js": b"text/javascript; charset=utf-8",
    "console.css": b"text/css; charset=utf-8",
    "icon.svg": b"image/svg+xml",
}
"""The console's files besides the page, with their types; the page names them by their versioned names."""

_SAFE = (
    (b"Content-Security-Policy", CSP),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
)
_PAGE_HEADERS = ((b"Cache-Control", b"no-cache"), *_SAFE)
_ASSET_HEADERS = ((b"Cache-Control", b"public, max-age=31536000, immutable"), *_SAFE)
_HTML = b"text/html; charset=utf-8"


def _read(name: str) -> bytes:
    return importlib.resources.files("tuco.http").joinpath("ui", name).read_bytes()


def versioned(name: str, content: bytes) -> str:
    """``console.js`` as ``console.<first 12 hex digits of its SHA-256>.js``."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(content).hexdigest()[:12]}{dot}{suffix}"


@functools.cache
def _built() -> tuple[Response, dict[bytes, Response]]:
    """The page, with the assets' versioned names in it, and each asset by its versioned name; built on first use."""
    page = _read("index.html")
    assets: dict[bytes, Response] = {}
    for name, content_type in ASSETS.items():
        content = _read(name)
        served = versioned(name, content)
        page = page.replace(b"{{" + name.encode() + b"}}", b"/ui/" + served.encode())
        assets[served.encode()] = Response(200, content, content_type, _ASSET_HEADERS)
    return Response(200, page, _HTML, _PAGE_HEADERS), assets


def index(ctx: Context, request: Request, segment: bytes) -> Answer:
    """``/ui/`` (and ``/``, ``/ui``): the console's page; it names its files by absolute paths."""
    return _built()[0]


def asset(ctx: Context, request: Request, segment: bytes) -> Answer:
    """``/ui/{asset}``: one file by its versioned name; any other name is 404 (an old version is gone)."""
    found = _built()[1].get(segment)
    if found is None:
        return error_answer(NotFoundError("no such file in the console; reload /ui/ for the current ones"))
    return found
