"""Database URLs: checked strictly, and shown only with their password replaced by ``***``.

A password full of ``/``, ``#`` or ``@`` (base64 passwords are) must be
percent-encoded in a URL; written raw it splits the URL in the wrong place, and
each parser (ours, asyncpg's, libpq's) would guess differently where the
password ends. So a URL is accepted only when it reads one way, and is shown
(redacted) only then: whatever cannot be parsed unambiguously is never printed.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = ["check_database_url", "password_of", "redact_dsn"]

SCHEMES = ("postgresql", "postgres")
_HIDDEN = "(a database URL that is not shown: it does not parse)"
_HINT = "percent-encode '/', '#', '@', ':' and '?' in the user name, password and database name (%2F %23 %40 %3A %3F)"


def check_database_url(url: str) -> None:
    """Raise :class:`ValueError` unless ``url`` is an unambiguous ``postgresql://`` URL.

    The message never repeats the URL (it may hold the password); it says what
    is wrong and how to write it.
    """
    if "://" not in url:
        if "=" in url:
            raise ValueError(
                "key=value connection strings are not supported; give a postgresql:// URL, "
                "or unset it to use the PG* variables"
            )
        raise ValueError("not a postgresql:// URL")
    scheme = url.partition("://")[0]
    if scheme.lower() not in SCHEMES:
        shown = scheme if scheme.isascii() and scheme.replace("+", "").replace("-", "").isalnum() else "another one"
        raise ValueError(f"the scheme must be postgresql:// or postgres://, not {shown}://")
    if "#" in url:
        raise ValueError(f"the URL contains '#'; {_HINT}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("the URL is malformed") from None
    hosts = parts.netloc.rpartition("@")[2]
    if parts.netloc.count("@") > 1 or "@" in parts.path + parts.query or parts.path.count("/") > 1:
        raise ValueError(f"the URL has '/' or '@' in an unexpected place; {_HINT}")
    for host in hosts.split(","):
        _check_host(host)


def _check_host(host: str) -> None:
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("the URL is malformed")
        port = rest[1:]
    else:
        name, _, port = host.partition(":")
        if ":" in port:
            raise ValueError(f"the URL has ':' in an unexpected place; {_HINT}")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"the port of {name or 'the host'} is not a number from 1 to 65535")


def password_of(url: str) -> str | None:
    """The URL's password (from the user part or a ``password`` parameter), percent-decoded, or None."""
    try:
        check_database_url(url)
    except ValueError:
        return None
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:
        return unquote(userinfo.partition(":")[2]) or None
    for item in parts.query.split("&"):
        name, _, value = item.partition("=")
        if unquote(name).lower() == "password":
            return unquote(value) or None
    return None


def redact_dsn(url: str) -> str:
    """``url`` with its password replaced by ``***``; a placeholder if it does not parse unambiguously."""
    try:
        check_database_url(url)
    except ValueError:
        return _HIDDEN
    scheme, rest = url.split("://", 1)
    netloc_end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    userinfo, at, hosts = netloc.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    path, question, query = tail.partition("?")
    if query:
        query = "&".join(_redact_parameter(item) for item in query.split("&"))
    return f"{scheme}://{userinfo}{at}{hosts}{path}{question}{query}"


def _redact_parameter(item: str) -> str:
    name, equals, _ = item.partition("=")
    return f"{name}=***" if equals and unquote(name).lower() == "password" else item
