"""Several replicas behind one client: which URL each request goes to, and what a failure changes.

Reads (GET) are spread round robin over every URL; everything else sticks to one URL
until it fails (a connection error or a 503), then moves to the next, so a session's
writes and renewals do not hop between replicas without reason. Whether a failed
request is sent again is the call's business (``Call.may_resend``); this only says where.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from tuco.client._calls import Call
from tuco.client._errors import OutcomeUnknownError
from tuco.errors import ConfigurationError, ServerUnreachableError

__all__ = ["Endpoints", "split_urls", "unreachable"]


def split_urls(text: str) -> tuple[str, ...]:
    """``a,b,c`` (spaces allowed) as a tuple of URLs without trailing slashes; each must be http(s)."""
    urls = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    if not urls:
        raise ConfigurationError("no server URL given")
    if len(urls) > 64:
        raise ConfigurationError("at most 64 server URLs")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the server URL must start with http:// or https://, not {url!r}")
    return urls


class Endpoints:
    """The URLs, the next one to read from and the one writes use."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self._next_read = random.randrange(len(urls))
        self._writer = 0
        self._guard = threading.Lock()

    def pick(self, call: Call[Any]) -> str:
        """The URL for ``call``: the next in turn for a read, the current writer's otherwise."""
        if len(self.urls) == 1:
            return self.urls[0]
        with self._guard:
            if call.method == "GET":
                self._next_read = (self._next_read + 1) % len(self.urls)
                return self.urls[self._next_read]
            return self.urls[self._writer]

    def stream(self) -> str:
        """The URL for a watch stream (the writer's: it moves on failure as writes do)."""
        return self.urls[self._writer]

    def failed(self, url: str) -> None:
        """``url`` did not answer (or answered 503): writes move on to the next URL."""
        with self._guard:
            if self.urls[self._writer] == url:
                self._writer = (self._writer + 1) % len(self.urls)
            if len(self.urls) > 1 and self.urls[self._next_read] == url:
                self._next_read = (self._next_read + 1) % len(self.urls)

    def attempts(self, configured: int) -> int:
        """Tries per call: the backoff's, but at least two per URL so every replica is tried."""
        return max(configured, 2 * len(self.urls))


def unreachable(call: Call[Any], url: str, exc: Exception, *, sent: bool) -> ServerUnreachableError:
    """The error for a call that got no answer: :class:`OutcomeUnknownError` if it was a sent unrepeatable write."""
    detail = f"{url}: {exc or type(exc).__name__}"
    if sent and not call.idempotent:
        return OutcomeUnknownError(f"{detail} (the {call.method} was sent: it may or may not have been applied)")
    return ServerUnreachableError(detail)
