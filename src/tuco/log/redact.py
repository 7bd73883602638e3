"""Keep credentials out of logs and error messages."""

from __future__ import annotations

import re

__all__ = ["redact_dsn"]

_URL_PASSWORD = re.compile(r"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/?#]*):[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>(?:^|\s)password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with every password replaced by ``***``, in URL or ``key=value`` form.

    Works on the text rather than parsing it, so multi-host URLs, IPv6 hosts
    and unusual query strings come through unchanged apart from the secret.
    """
    if "://" in dsn:
        dsn = _URL_PASSWORD.sub(r"\g<head>:***@", dsn, count=1)
        return _QUERY_PASSWORD.sub(r"\g<head>***", dsn)
    return _KEYWORD_PASSWORD.sub(r"\g<head>***", dsn)
