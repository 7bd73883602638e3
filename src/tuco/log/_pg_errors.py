"""How the PostgreSQL log sorts asyncpg's errors, and says them in its own log without a password.

One module for every classification (psycopg's ``errors.py``): a driver error
at all, worth retrying, a node that is not the primary, a permission refused,
a configuration the server will never accept. The decisions are pure functions
of the exception; :mod:`tuco.log.postgres` acts on them.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import asyncpg

from tuco.log.redact import password_of

__all__ = [
    "NotPrimaryError",
    "describe_error",
    "is_driver_error",
    "is_not_primary",
    "is_permission_denied",
    "is_retriable",
    "is_transient",
    "refusal",
    "secrets_of",
]

_READ_ONLY = "25006"  # read_only_sql_transaction


class NotPrimaryError(Exception):
    """The node answered, but is not (or no longer) the primary: a standby, or read-only."""


def is_permission_denied(exc: BaseException) -> bool:
    """Whether the database refused a statement for a missing privilege (SQLSTATE 42501)."""
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) == "42501"


# SQLSTATE classes worth retrying: connection exceptions, transaction rollback
# (serialization failure, deadlock), insufficient resources (too many
# connections), operator intervention (shutdown, cancel), idle-in-transaction timeout.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57"})
_TRANSIENT_STATES = frozenset({"25P03", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later (on a new connection) may succeed."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, (asyncpg.DataError, asyncpg.ClientConfigurationError)):
        return False
    return isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError))


def refusal(exc: BaseException) -> str | None:
    """In tuco's words, why the server will never accept this configuration; None if waiting may help.

    A database that does not exist or a login the server refuses is a mistake to
    report at once, not an outage to ride out.
    """
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return "the connection settings are invalid"
    state = ""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
    if state == "3D000":
        return "it does not exist"
    if state.startswith("28"):
        return "the server refused the login (authentication)"
    if state == "42501":
        return "the user lacks a privilege tuco needs (permission denied)"
    return None


def is_not_primary(exc: BaseException) -> bool:
    """Whether the error says "this node takes no writes": retry on another connection (and host)."""
    if isinstance(exc, (NotPrimaryError, asyncpg.TargetServerAttributeNotMatched)):
        return True
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) == _READ_ONLY


def is_retriable(exc: BaseException) -> bool:
    """Whether trying again later (on a new connection, maybe another host) may succeed."""
    return is_not_primary(exc) or is_transient(exc)


def is_driver_error(exc: BaseException) -> bool:
    """Whether the exception comes from the driver, the network or the database (never a bug of tuco's)."""
    return isinstance(
        exc,
        (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
            TimeoutError,
            NotPrimaryError,
        ),
    )


def describe_error(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """A one-line description of a driver error, for the log, with any of ``secrets`` blanked out."""
    text = f"{type(exc).__name__}: {exc}".strip().removesuffix(":")
    for secret in secrets:
        text = text.replace(secret, "***")
    return " ".join(text.split())


def secrets_of(dsn: str | None) -> tuple[str, ...]:
    """The password as it may appear in a driver's message: decoded and as written in the URL."""
    password = os.environ.get("PGPASSWORD") if dsn is None else password_of(dsn)
    if not password:
        return ()
    return tuple(dict.fromkeys((password, quote(password, safe=""))))
