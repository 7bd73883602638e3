"""The native server's bytes on the wire: status lines, cached response heads, chunk framing, the Date header.

A response head is its status line and static header fields, which repeat
from one response to the next (a GET's 200 with its content type, a PUT's
201), then the per-response fields (the response's ``etag``, ``revision`` and
``fields``, kept as values until here, and a request id), then
``Content-Length`` and the Date tail. The static part is rendered once per
shape and kept in a bounded dict; what varies is joined onto it. Bodies up to
``JOIN_BODY_BYTES`` are copied into the head's buffer (one small write beats
two); larger ones, and large chunks of a stream, are handed to the transport
as they are, never copied.
"""

from __future__ import annotations

import email.utils
import http
from typing import Final

import structlog

from tuco.http._fast import render_read as _render_read
from tuco.http._fast import render_written as _render_written
from tuco.http.messages import Headers, Response, StreamResponse

__all__ = [
    "CLOSE",
    "CONTINUE",
    "JOIN_BODY_BYTES",
    "KEEP",
    "KEEP_SAID",
    "LAST_CHUNK",
    "date_tail",
    "frame_chunk",
    "id_line",
    "render",
    "serialise",
    "status_line",
    "stream_head",
]

_logger = structlog.get_logger("tuco.http")

# How a response ends the exchange: keep-alive implied, keep-alive said (HTTP/1.0), or close.
KEEP: Final = 0
KEEP_SAID: Final = 1
CLOSE: Final = 2

# Bodies up to this size are copied into the head's buffer: one small write beats two.
JOIN_BODY_BYTES: Final = 16 * 1024
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"
_MAX_CACHED_HEADS: Final = 1024
_join: Final = b"".join

# RFC 9110 names where Python's table still has the older ones.
_REASONS: Final[dict[int, str]] = {status.value: status.phrase for status in http.HTTPStatus}
_REASONS.update(
    {413: "Content Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable", 422: "Unprocessable Content"}
)


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``, with the RFC 9110 reason phrase."""
    return f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode("ascii")


def date_tail(now: float) -> bytes:
    """The end of every response head at Unix time ``now``: the Date field and the blank line."""
    return b"\r\nDate: " + email.utils.formatdate(now, usegmt=True).encode("ascii") + b"\r\n\r\n"


_HeadKey = tuple[int, bytes | None, tuple[tuple[bytes, bytes], ...], int]
_HEADS: Final[dict[_HeadKey, bytes]] = {}


def _build_head(key: _HeadKey) -> bytes:
    """A response head's status line and static headers (up to the dynamic fields); cached by shape."""
    status, content_type, headers, mode = key
    parts = [status_line(status)]
    if content_type is not None:
        parts += [b"Content-Type: ", content_type, b"\r\n"]
    for name, value in headers:
        if b"\r" in name or b"\n" in name or b"\r" in value or b"\n" in value:
            # A header that would split the response is a bug upstream; drop it rather than emit it.
            _logger.error("response_header_dropped", name=name)
            continue
        parts += [name, b": ", value, b"\r\n"]
    if mode == CLOSE:
        parts.append(b"Connection: close\r\n")
    elif mode == KEEP_SAID:
        parts.append(b"Connection: keep-alive\r\n")
    head = b"".join(parts)
    if len(_HEADS) >= _MAX_CACHED_HEADS:
        _HEADS.clear()
    _HEADS[key] = head
    return head


_READ_LINES: Final = b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\nX-Tuco-Create-Revision: %d\r\nX-Tuco-Version: %d\r\n'
_READ: Final = b"%b" + _READ_LINES + b"Content-Length: %d%b%b"
"""A key's whole read answer: head, ETag, revision, create revision, version, length, the date's tail, body."""
_WRITTEN: Final = b'%bETag: "%d"\r\nX-Tuco-Revision: %d\r\nContent-Length: 0%b'
"""A write's whole answer (no body): head, ETag, revision, the date's tail."""


def _read_answer(
    head: bytes, etag: int, revision: int, created: int, version: int | None, tail: bytes, body: bytes
) -> bytes:
    """``_READ``'s bytes: rendered in C in the compiled build, formatted here for what C leaves (ints over 64 bits)."""
    render = _render_read
    if render is not None and version is not None:
        try:
            return render(head, etag, revision, created, version, tail, body)
        except (OverflowError, TypeError):
            pass  # the format below renders it, or raises what it always raised
    return _READ % (head, etag, revision, created, version, len(body), tail, body)


def _written_answer(head: bytes, etag: int, revision: int, tail: bytes) -> bytes:
    """``_WRITTEN``'s bytes, as :func:`_read_answer` renders ``_READ``'s."""
    render = _render_written
    if render is not None:
        try:
            return render(head, etag, revision, tail)
        except (OverflowError, TypeError):
            pass
    return _WRITTEN % (head, etag, revision, tail)


def _field_lines(fields: Headers) -> bytes:
    return b"".join([b"%b: %b\r\n" % pair for pair in fields])


def dynamic_lines(response: Response) -> bytes:
    """The response's ``ETag``, ``X-Tuco-Revision`` and other per-response fields as header lines."""
    etag = response.etag
    revision = response.revision
    if etag is not None:
        if revision is not None:
            lines = b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (etag, revision)
        else:
            lines = b'ETag: "%d"\r\n' % etag
    elif revision is not None:
        lines = b"X-Tuco-Revision: %d\r\n" % revision
    else:
        lines = b""
    if response.created is not None:
        lines += b"X-Tuco-Create-Revision: %d\r\nX-Tuco-Version: %d\r\n" % (response.created, response.version or 0)
    return lines + _field_lines(response.fields) if response.fields else lines


def render(response: Response, mode: int, date_tail: bytes) -> bytes:
    """The complete bytes of a response whose body is sent too; used outside connections."""
    body = response.body
    key = (response.status, response.content_type, response.headers, mode)
    head = _HEADS.get(key) or _build_head(key)
    return b"%b%bContent-Length: %d%b%b" % (head, dynamic_lines(response), len(body), date_tail, body)


def serialise(out: list[bytes], response: Response, mode: int, head_only: bool, more: bytes, date_tail: bytes) -> int:
    """Append a response (its head, and its body unless ``head_only``) to ``out``; the bytes appended.

    ``more`` is header lines the connection adds (a request id). The dynamic fields are
    rendered here, inline: the two commonest answers, a key's read and a write's, are
    one ``%`` format each, head to body.
    """
    body = response.body
    key = (response.status, response.content_type, response.headers, mode)
    head = _HEADS.get(key) or _build_head(key)
    size = len(body)
    etag = response.etag
    revision = response.revision
    if etag is not None and revision is not None:
        created = response.created
        if not more and not response.fields:
            if created is not None:  # a key's read: the four numbers, the length and the body in one format
                if not head_only and size <= JOIN_BODY_BYTES:
                    if _render_read is None:  # the pure build: no call in between
                        data = _READ % (head, etag, revision, created, response.version, size, date_tail, body)
                    else:
                        data = _read_answer(head, etag, revision, created, response.version, date_tail, body)
                    out.append(data)
                    return len(data)
            elif not size and response.status != 204:  # a write's answer
                if _render_written is None:
                    data = _WRITTEN % (head, etag, revision, date_tail)
                else:
                    data = _written_answer(head, etag, revision, date_tail)
                out.append(data)
                return len(data)
        if created is not None:
            extra = _READ_LINES % (etag, revision, created, response.version)
        else:
            extra = b'ETag: "%d"\r\nX-Tuco-Revision: %d\r\n' % (etag, revision)
        if response.fields:
            extra += _field_lines(response.fields)
    else:
        extra = dynamic_lines(response)
    if more:
        extra += more
    if head_only or not size:
        if response.status == 204:  # RFC 9110 8.6: no Content-Length on a 204 (the tail's CRLF ends extra's line)
            data = _join((head, extra, date_tail[2:]))
        else:
            data = _join((head, extra, b"Content-Length: ", str(size).encode(), date_tail))
        out.append(data)
        return len(data)
    if size <= JOIN_BODY_BYTES:
        data = _join((head, extra, b"Content-Length: ", str(size).encode(), date_tail, body))
        out.append(data)
        return len(data)
    data = _join((head, extra, b"Content-Length: ", str(size).encode(), date_tail))
    out.append(data)
    out.append(body)
    return len(data) + size


def stream_head(response: StreamResponse, mode: int, date_tail: bytes, extra: bytes) -> bytes:
    """The head of a chunked response (streams are rare: not cached)."""
    key = (response.status, response.content_type, response.headers, mode)
    head = _HEADS.get(key) or _build_head(key)
    return head + extra + b"Transfer-Encoding: chunked" + date_tail


def frame_chunk(chunk: bytes) -> tuple[bytes, ...]:
    """One chunk of a chunked body between its framing lines; a large chunk is kept as it is, never copied."""
    if len(chunk) <= JOIN_BODY_BYTES:
        return (b"%x\r\n%b\r\n" % (len(chunk), chunk),)
    return (b"%x\r\n" % len(chunk), chunk, b"\r\n")


def id_line(request_id: bytes) -> bytes:
    """The ``X-Request-Id`` field echoed on an answer."""
    return b"X-Request-Id: " + request_id + b"\r\n"
