"""Where the server is and how to reach it: arguments first, then ``TUCO_URL``, ``TUCO_TOKEN``, ``TUCO_CA_FILE``..."""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuco.client._calls import Answer, Call
from tuco.client._endpoints import split_urls
from tuco.errors import ConfigurationError

__all__ = ["DEFAULT_URL", "Backoff", "Options"]

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: try again after 0..min(cap, base * 2**attempt) seconds.

    ``attempts`` counts the first try. A ``Retry-After`` from the server is the least wait.
    """

    attempts: int = 5
    base: float = 0.05
    cap: float = 2.0

    def delay(
        self, call: Call[Any], attempt: int, answer: Answer | None, *, sent: bool, tries: int = 0
    ) -> float | None:
        """Seconds to wait before trying ``call`` again after this outcome, or None to stop here.

        ``tries``: at least this many attempts (two per URL of a multi-URL client).
        """
        if answer is not None and answer.status != 503:
            return None
        if attempt + 1 >= max(self.attempts, tries) or not call.may_resend(answer, sent):
            return None
        wait = self.jitter(attempt)
        retry_after = answer.headers.get("retry-after", "") if answer is not None else ""
        if retry_after.isdigit():
            wait = max(wait, min(float(retry_after), self.cap))
        return wait

    def jitter(self, attempt: int) -> float:
        """A random wait before try ``attempt + 1``."""
        return random.uniform(0.0, min(self.cap, self.base * 2**attempt))


@dataclass(frozen=True, slots=True)
class Options:
    """The connection settings both clients are made from."""

    url: str
    """The first URL (where a single server is meant)."""
    token: str | None
    verify: ssl.SSLContext | bool
    cert: tuple[str, str] | None
    urls: tuple[str, ...] = ()
    """Every URL given (``a,b,c``): the client spreads reads over them and fails over between them."""

    @classmethod
    def resolve(
        cls,
        url: str | None,
        token: str | None,
        ca_file: str | Path | None,
        cert: tuple[str | Path, str | Path] | None,
        environ: Mapping[str, str] | None = None,
    ) -> Options:
        """Arguments win; a missing one comes from ``TUCO_*`` in ``environ`` (the process's by default)."""
        env = os.environ if environ is None else environ
        urls = split_urls(url or env.get("TUCO_URL") or DEFAULT_URL)
        token = token or env.get("TUCO_TOKEN") or _read_token(env.get("TUCO_TOKEN_FILE"))
        ca = ca_file or env.get("TUCO_CA_FILE")
        if cert is None and env.get("TUCO_CLIENT_CERT_FILE"):
            cert = (env["TUCO_CLIENT_CERT_FILE"], env.get("TUCO_CLIENT_KEY_FILE") or env["TUCO_CLIENT_CERT_FILE"])
        verify: ssl.SSLContext | bool = True
        try:
            if ca:
                verify = ssl.create_default_context(cafile=str(ca))
            if cert is not None:
                if not isinstance(verify, ssl.SSLContext):
                    verify = ssl.create_default_context()
                verify.load_cert_chain(str(cert[0]), str(cert[1]))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the TLS files: {exc}") from exc
        return cls(urls[0], token, verify, (str(cert[0]), str(cert[1])) if cert else None, urls)

    def headers(self) -> dict[str, str]:
        """Headers sent on every request (the bearer token, when there is one)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        raise ConfigurationError(f"cannot read TUCO_TOKEN_FILE: {exc.strerror}") from exc
