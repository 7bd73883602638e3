"""Keep credentials out of logs and error messages."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_dsn"]


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (URL or key=value form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:***@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, "password=***" if "password=" in parts.query else parts.query, parts.fragment))
    words = []
    for word in dsn.split():
        name, sep, _ = word.partition("=")
        words.append(f"{name}=***" if sep and name.lower() == "password" else word)
    return " ".join(words)
