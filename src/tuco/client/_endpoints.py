"""Several replicas behind one client: which URL each request goes to, and what a failure changes.

Reads (GET) are spread round robin over every URL; everything else sticks to one URL
until it fails (a connection error or a 503), then moves to the next, so a session's
writes and renewals do not hop between replicas without reason. A URL that failed is
skipped for a few seconds (unless every URL failed), so a dead replica costs one
failed attempt, not one in every few requests. Whether a failed
request is sent again is the call's business (``Call.may_resend``); this only says where.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from tuco.client._calls import Call
from tuco.client._errors import OutcomeUnknownError
from tuco.errors import ConfigurationError, ServerUnreachableError

__all__ = ["AVOID_SECONDS", "Endpoints", "split_urls", "unreachable"]

AVOID_SECONDS = 2.0
"""How long a URL that failed is left out of the rotation."""


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
        if url.endswith("/v1"):  # every call would go to /v1/v1/...: a generic 404 that explains nothing
            raise ConfigurationError(
                f"give the server's URL without /v1 (tuco adds the /v1/... paths itself), not {url!r}"
            )
    return urls


class Endpoints:
    """The URLs, the next one to read from and the one writes use."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self._next_read = random.randrange(len(urls))
        self._writer = 0
        self._avoid: dict[str, float] = {}
        self._guard = threading.Lock()

    def _usable(self, index: int, now: float) -> bool:
        return self._avoid.get(self.urls[index], 0.0) <= now

    def pick(self, call: Call[Any]) -> str:
        """The URL for ``call``: the next usable one in turn for a read, the current writer's otherwise."""
        if len(self.urls) == 1:
            return self.urls[0]
        now = time.monotonic()
        with self._guard:
            if call.method != "GET":
                return self.urls[self._writer]
            for _ in self.urls:
                self._next_read = (self._next_read + 1) % len(self.urls)
                if self._usable(self._next_read, now):
                    break
            return self.urls[self._next_read]

    def stream(self) -> str:
        """The URL for a watch stream (the writer's: it moves on failure as writes do)."""
        return self.urls[self._writer]

    def failed(self, url: str) -> None:
        """``url`` did not answer (or answered 503): it is skipped for a while, writes move to the next usable URL."""
        if len(self.urls) == 1:
            return
        now = time.monotonic()
        with self._guard:
            self._avoid[url] = now + AVOID_SECONDS
            if self.urls[self._writer] == url:
                for _ in self.urls:
                    self._writer = (self._writer + 1) % len(self.urls)
                    if self._usable(self._writer, now):
                        break

    def attempts(self, configured: int) -> int:
        """Tries per call: the backoff's, but at least two per URL so every replica is tried."""
        return max(configured, 2 * len(self.urls))


def unreachable(call: Call[Any], url: str, exc: Exception, *, sent: bool) -> ServerUnreachableError:
    """The error for a call that got no answer: :class:`OutcomeUnknownError` if it was a sent unrepeatable write."""
    detail = f"{url}: {exc or type(exc).__name__}"
    if sent and not call.idempotent:
        return OutcomeUnknownError(f"{detail} (the {call.method} was sent: it may or may not have been applied)")
    return ServerUnreachableError(detail)
