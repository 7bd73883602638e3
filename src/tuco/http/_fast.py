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

__all__ = ["asgi_read_headers", "find_byte", "plain_segment", "render_read", "render_written"]

render_read: Callable[[bytes, int, int, int, int, bytes, bytes], bytes] | None
render_written: Callable[[bytes, int, int, bytes], bytes] | None
find_byte: Callable[[bytes, int], int] | None
plain_segment: Callable[[bytes], bool] | None
asgi_read_headers: Callable[[list[tuple[bytes, bytes]], int, int, int, int, int], list[tuple[bytes, bytes]]] | None
try:
    from tuco.core._native import asgi_read_headers, find_byte, plain_segment, render_read, render_written
except ImportError:
    render_read = render_written = find_byte = plain_segment = asgi_read_headers = None
