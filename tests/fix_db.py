"""A fresh PostgreSQL database per test, on the server named by ``TUCO_TEST_DATABASE_URL``.

A missing server fails the test under ``CI=true`` (as ``scripts/test`` runs) and skips it otherwise
(see :mod:`tests.needs`).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.needs import postgres_marked, unavailable
from tuco.core.events import Entry, Event, EventType
from tuco.core.store import Store

__all__ = [
    "entries_of",
    "eventually",
    "fetch",
    "last_value_per_key",
    "pg_dsn",
    "replayed_entries",
    "server_dsn",
    "state_entries",
]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_dsn() -> str:
    """The maintenance database URL of the test server."""
    return os.environ.get("TUCO_TEST_DATABASE_URL", DEFAULT_URL)


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def pg_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database created for this test and dropped after it (the test must be marked postgres).

    Its name is random, so tests on several xdist workers never share a database.
    """
    postgres_marked(request)
    admin = server_dsn()
    name = f"tuco_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        unavailable(f"PostgreSQL test server unreachable ({type(exc).__name__}: {exc}); set TUCO_TEST_DATABASE_URL")
    try:
        yield _with_database(admin, name)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- helpers shared by the PostgreSQL tests ---------------------------------


async def fetch(dsn: str, statement: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on a connection of its own and return the rows."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def last_value_per_key(dsn: str) -> dict[str, bytes]:
    """The state the log describes (last event per key, PUTs only), after checking every sequence is there once."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (key) key, type, value FROM tuco_events ORDER BY key, sequence DESC"
        )
        head = await conn.fetchval("SELECT sequence FROM tuco_head")
        count, distinct, top = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT sequence), coalesce(max(sequence), 0) FROM tuco_events"
        )
    finally:
        await conn.close()
    assert count == distinct == top == head, f"sequences 1..{head} each once: {count=} {distinct=} {top=}"
    return {bytes(row["key"]).decode(): bytes(row["value"]) for row in rows if row["type"] == 1}


async def replayed_entries(dsn: str) -> dict[str, Entry]:
    """Each live key's value and revisions as a store replaying all of ``tuco_events`` in order derives them."""
    rows = await fetch(dsn, "SELECT sequence, type, key, value FROM tuco_events ORDER BY sequence")
    store = Store()
    store.apply_batch([Event(r[0], EventType(r[1]), bytes(r[2]).decode(), bytes(r[3])) for r in rows])
    return entries_of(store)


async def state_entries(dsn: str) -> dict[str, Entry]:
    """Each key's value and revisions as ``tuco_state`` keeps them (its sequence is the mod_revision)."""
    rows = await fetch(dsn, "SELECT key, value, create_revision, sequence, version FROM tuco_state")
    return {bytes(r[0]).decode(): Entry(bytes(r[1]), r[2], r[3], r[4]) for r in rows}


def entries_of(store: Store) -> dict[str, Entry]:
    """Each key's value and revisions in a store."""
    return {key: store.entry(key) for key in store.snapshot()}


def eventually(check: Callable[[], object], *, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``check`` until it returns something true; fail naming ``what`` after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)
