"""Riding through a failover: which node is the primary, and whether its history is still ours.

A highly available PostgreSQL fails over by promoting a standby: connections
drop, the old primary vanishes (or comes back read-only), a new primary
appears under another address of the same multi-host URL. tuco copes in four
ways, each here:

- Every connection asks for the primary (``target_session_attrs=read-write``
  unless the URL or ``PGTARGETSESSIONATTRS`` says ``primary``), so the driver
  skips standbys and read-only nodes when it connects.
- A node that answers a write as read-only (SQLSTATE 25006: it was demoted, or
  made read-only, under an open connection) is *not the primary*: the
  connection is dropped and the write retried elsewhere, never refused to the
  client nor acknowledged. The transaction aborted, so nothing was written.
- Reads that must see the latest writes (the follower's polls, consistent
  reads) check in the same query that the node is a writable primary; a
  standby or read-only node would serve an old head.
- A reconnected replica checks that the database's history still holds what
  it applied: the head is not behind its position and the event at its
  position is the one it applied. A promoted *asynchronous* standby can miss
  acknowledged writes; new writes would then take their sequences again, and
  the replica would skip them. The log fails instead (restart the replica to
  follow the new history).
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from tuco.errors import ConfigurationError
from tuco.log._pg_errors import NotPrimaryError, is_not_primary, is_retriable

__all__ = [
    "READ_PRIMARY_HEAD",
    "NotPrimaryError",
    "describe_hosts",
    "event_at",
    "is_not_primary",
    "is_retriable",
    "session_attributes",
]

# The head, the database's clock, and whether this node takes writes (a standby in recovery or a node with
# default_transaction_read_only would answer with an old head or refuse writes).
READ_PRIMARY_HEAD = """SELECT h.sequence, e.committed_at, floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint,
        pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'
    FROM tuco_head h LEFT JOIN tuco_events e ON e.sequence = h.sequence WHERE h.id = 1"""
_EVENT_AT = "SELECT type, key FROM tuco_events WHERE sequence = $1"
_ACCEPTED = ("read-write", "primary")


def session_attributes(dsn: str | None) -> str | None:
    """The ``target_session_attrs`` to pass the driver: ``read-write`` unless the URL or environment set one.

    Raise :class:`~tuco.errors.ConfigurationError` for a value that can pick a
    node that refuses writes (``any``, ``standby``, ``read-only``...): the log
    writes on every connection it opens.
    """
    given = None
    if dsn is not None:
        for name, value in parse_qsl(urlsplit(dsn).query):
            if name == "target_session_attrs":
                given = (value, "TUCO_DATABASE_URL: target_session_attrs")
    if given is None and os.environ.get("PGTARGETSESSIONATTRS"):
        given = (os.environ["PGTARGETSESSIONATTRS"], "PGTARGETSESSIONATTRS")
    if given is None:
        return "read-write"
    value, where = given
    if value not in _ACCEPTED:
        shown = value if value.replace("-", "").isalpha() and len(value) <= 20 else "another value"
        raise ConfigurationError(
            f"invalid configuration: {where} must be read-write or primary "
            f"(tuco writes on every connection it opens), not {shown}"
        )
    return None


def describe_hosts(hosts: str, ports: str) -> str:
    """``PGHOST`` and ``PGPORT`` lists as ``h1:p1,h2:p2`` (one port for all, or one per host, as libpq reads them)."""
    names = hosts.split(",")
    numbers = ports.split(",")
    if len(numbers) == 1:
        numbers *= len(names)
    if len(numbers) != len(names):
        return f"{hosts} (ports {ports})"
    return ",".join(f"{name}:{port}" for name, port in zip(names, numbers, strict=True))


async def event_at(conn: asyncpg.Connection, sequence: int) -> tuple[int, bytes] | None:
    """The type and key of the event at ``sequence``, or None if the database has no such event."""
    row = await conn.fetchrow(_EVENT_AT, sequence)
    return None if row is None else (int(row[0]), bytes(row[1]))
