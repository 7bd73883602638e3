"""A fresh PostgreSQL database per test, on the server named by ``TUCO_TEST_DATABASE_URL``.

Outside CI a missing server skips the test with the reason; with ``CI=true`` it fails it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

__all__ = ["pg_dsn", "server_dsn"]

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
def pg_dsn() -> Iterator[str]:
    """The URL of an empty database created for this test and dropped after it."""
    admin = server_dsn()
    name = f"tuco_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        reason = f"PostgreSQL test server unreachable ({type(exc).__name__}: {exc}); set TUCO_TEST_DATABASE_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield _with_database(admin, name)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
