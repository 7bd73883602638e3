"""The request path's byte work in C in the compiled build (``tuco.core._native``); ``None`` in the pure build.

Each is the exact result of the Python expression its caller uses instead
when it is ``None``: :func:`render_read` and :func:`render_written` of the two
``%`` formats in :mod:`tuco.http._wire` (which parse their format on every
call: about 290 ns of a GET), :func:`find_byte` of ``bytes.find`` with one
byte and :func:`plain_segment` of the key route's check of its segment
(Python 3.11 parses ``bytes.find``'s arguments the old way: about 50 ns a
call, three calls a request), and :func:`asgi_read_headers` of the ASGI app's
header list of a key's read (``tuco.http.asgi._head``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["asgi_read_headers", "find_byte", "plain_segment", "render_read", "render_written"]

_render_read: Callable[[bytes, int, int, int, int, bytes, bytes], bytes] | None
_render_written: Callable[[bytes, int, int, bytes], bytes] | None
_find_byte: Callable[[bytes, int], int] | None
_plain_segment: Callable[[bytes], bool] | None
_asgi_read_headers: Callable[[list[tuple[bytes, bytes]], int, int, int, int, int], list[tuple[bytes, bytes]]] | None
try:
    from tuco.core._native import asgi_read_headers as _asgi_read_headers
    from tuco.core._native import find_byte as _find_byte
    from tuco.core._native import plain_segment as _plain_segment
    from tuco.core._native import render_read as _render_read
    from tuco.core._native import render_written as _render_written
except ImportError:
    _render_read = _render_written = _find_byte = _plain_segment = _asgi_read_headers = None

# Final: in the compiled build, each caller reads a C static, not this module's dict (see tuco.http.observer).
render_read: Final = _render_read
render_written: Final = _render_written
find_byte: Final = _find_byte
plain_segment: Final = _plain_segment
asgi_read_headers: Final = _asgi_read_headers
