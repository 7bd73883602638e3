"""Following a watch stream across reconnects, without I/O: which request to send, what each line means.

The cursor remembers the last revision the stream covered (every frame's ``id`` is
one), so a new connection asks for exactly what comes after it with
``Last-Event-ID``: nothing is missed and nothing is seen twice, whether the server
ended the stream (``cancel``), restarted, or the connection dropped.
"""

from __future__ import annotations

import base64
import json
from typing import NamedTuple

from tuco.client._calls import Answer, error_from
from tuco.errors import InvalidRequestError

__all__ = ["WatchCursor", "WatchEvent"]


class WatchEvent(NamedTuple):
    """One change: ``type`` is ``"put"`` or ``"delete"``; a put has the value and the key's revisions."""

    type: str
    revision: int
    key: str
    value: bytes | None = None
    create_revision: int | None = None
    version: int | None = None


class WatchCursor:
    """The state of one logical watch: where it is, and the SSE frame being read."""

    def __init__(self, *, prefix: str | None = None, key: str | None = None, start_revision: int | None = None) -> None:
        if prefix is not None and key is not None:
            raise InvalidRequestError("watch a prefix or a key, not both")
        if start_revision is not None and (isinstance(start_revision, bool) or start_revision < 1):
            raise InvalidRequestError("start_revision is a whole number from 1")
        self._selector = ("key", key) if key is not None else ("prefix", prefix or "")
        self._start = start_revision
        self.last: int | None = None
        """The last revision the stream covered; None before the first frame with an id."""
        self._id: str | None = None
        self._event = "message"
        self._data: list[str] = []
        self._down_since: float | None = None
        self.attempts = 0
        """Connections tried since the last stream opened: the backoff's exponent."""

    def opened(self) -> None:
        """A stream is open: the next outage starts from scratch."""
        self._down_since, self.attempts = None, 0

    def lost(self, now: float, patience: float) -> bool:
        """A connection failed at ``now`` (monotonic); True once no stream has opened for ``patience`` seconds."""
        if self._down_since is None:
            self._down_since = now
        return now - self._down_since > patience

    def request(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """``(params, headers)`` of the next connection."""
        params: list[tuple[str, str]] = [self._selector]
        headers: list[tuple[str, str]] = [("Accept", "text/event-stream")]
        if self.last is not None:
            headers.append(("Last-Event-ID", str(self.last)))
        elif self._start is not None:
            params.append(("start_revision", str(self._start)))
        return tuple(params), tuple(headers)

    def check(self, answer: Answer) -> None:
        """Raise the error of a connection that did not open a stream (410 history_compacted, 409 revision_ahead).

        Neither is retried: a start no longer retained cannot come back, and a store behind
        the cursor (restored from a backup) will not give the changes the cursor says it saw.
        """
        if answer.status != 200:
            raise error_from(answer)

    def feed(self, line: str) -> WatchEvent | None:
        """Take one line of the stream; the change it completes, if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            if self.last is None and line.startswith(": watching after revision "):
                # A watch "from now" learns where now was: a reconnect resumes there, not at a later now.
                tail = line.rpartition(" ")[2]
                self.last = int(tail) if tail.isdigit() else None
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> WatchEvent | None:
        frame_id, event, data = self._id, self._event, "\n".join(self._data)
        self._id, self._event, self._data = None, "message", []
        if frame_id is not None and frame_id.isdigit():
            self.last = int(frame_id)
        if event not in ("put", "delete") or not data:
            return None  # progress and cancel move the cursor only; a cancel ends the stream, and we reconnect
        body = json.loads(data)
        value = body.get("value")
        return WatchEvent(
            event,
            int(body["revision"]),
            str(body["key"]),
            base64.b64decode(value) if isinstance(value, str) else None,
            body.get("create_revision"),
            body.get("version"),
        )
