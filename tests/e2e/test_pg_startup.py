"""How `tuco serve` reports a database it cannot use: one line, the right exit code, at once, never the password."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]

SECRET = "s3cr/t#x@y"  # a base64-like password: '/', '#' and '@' all need percent-encoding in a URL
ENCODED = "s3cr%2Ft%23x%40y"
HINT = "percent-encode '/', '#', '@', ':' and '?' in the user name, password and database name (%2F %23 %40 %3A %3F)"


def _serve(tmp_path: Path, url: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tuco", "serve"],
        env={
            **os.environ,
            "TUCO_PORT": "0",
            "TUCO_DATA_DIR": str(tmp_path),
            "TUCO_LOG_BACKEND": "postgres",
            "TUCO_DATABASE_URL": url,
            "TUCO_DATABASE_CONNECT_TIMEOUT_SECONDS": "300",  # a retry loop would outlive the subprocess timeout
            **env,
        },
        capture_output=True,
        timeout=30,
        check=False,
    )


def _lines(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode().splitlines()]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://tuco:{SECRET}@127.0.0.1:5432/tuco", f"the URL contains '#'; {HINT}"),
        ("postgresql://tuco:s3cr/tx@y@127.0.0.1:5432/tuco", f"the URL has '/' or '@' in an unexpected place; {HINT}"),
        ("postgresql://tuco:s3cr@t@127.0.0.1/tuco", f"the URL has '/' or '@' in an unexpected place; {HINT}"),
        ("postgresql://tuco:s3crt@127.0.0.1:99999/tuco", "the port of 127.0.0.1 is not a number from 1 to 65535"),
        ("postgresql://tuco:s3crt@[::1/tuco", "the URL is malformed"),
        ("mysql://tuco:s3crt@127.0.0.1/tuco", "the scheme must be postgresql:// or postgres://, not mysql://"),
        (
            "host=127.0.0.1 user=tuco password=s3crt",
            "key=value connection strings are not supported; give a postgresql:// URL, or unset it to use the "
            "PG* variables",
        ),
    ],
)
def test_a_bad_database_url_is_one_line_and_exit_2(tmp_path: Path, url: str, problem: str) -> None:
    """A malformed URL, a foreign scheme or a libpq keyword string: exit 2, one stderr line, nothing on stdout."""
    result = _serve(tmp_path, url)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [f"tuco: invalid configuration: TUCO_DATABASE_URL: {problem}"]
    assert result.stdout == b""


def _url(pg_dsn: str, *, user: str | None = None, database: str | None = None) -> str:
    parts = urlsplit(pg_dsn)
    netloc = f"{user or parts.username}:{ENCODED}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, f"/{database}" if database else parts.path, "", ""))


def _redacted(url: str) -> str:
    return url.replace(ENCODED, "***")


@pytest.mark.postgres
def test_a_percent_encoded_password_works_and_is_never_shown(tuco: StartTuco, pg_dsn: str) -> None:
    """A password with '/', '#' and '@', percent-encoded, is accepted; no output shows it in either form."""
    url = _url(pg_dsn)
    server = tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=url)
    assert server.wait_for("starting")["config"]["database_url"] == _redacted(url)
    with server.client() as http:
        assert http.put("/v1/key/k", content=b"v").status_code == 201
        ready = http.get("/readyz")
    assert server.terminate() == 0
    for secret in (SECRET, ENCODED, "s3cr"):
        assert secret not in server.output()
        assert secret not in ready.text


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("user", "database", "message"),
    [
        (None, "tuco_no_such_database", "cannot use the database {url}: it does not exist"),
        ("tuco_no_such_role", None, "cannot use the database {url}: the server refused the login (authentication)"),
    ],
)
def test_a_missing_database_or_refused_login_exits_1_at_once(
    tmp_path: Path, pg_dsn: str, user: str | None, database: str | None, message: str
) -> None:
    """No such database, or a refused login: exit 1 with one start_failed line naming the cause, no retry loop."""
    url = _url(pg_dsn, user=user, database=database)
    result = _serve(tmp_path, url)
    expected = message.format(url=_redacted(url))
    assert result.returncode == 1
    assert result.stderr.decode() == f"tuco: {expected}\n"
    lines = _lines(result.stdout)
    assert [line["event"] for line in lines if line["level"] != "info"] == ["start_failed"]
    failed = next(line for line in lines if line["event"] == "start_failed")
    assert (failed["error"], failed["message"]) == ("log_failed", expected)
    for secret in (SECRET, ENCODED, "s3cr"):
        assert secret not in result.stdout.decode() + result.stderr.decode()


@pytest.mark.postgres
def test_another_programs_table_exits_1_naming_it_and_the_next_start_says_the_same(tmp_path: Path, pg_dsn: str) -> None:
    """A foreign tuco_tokens: exit 1 naming the table (not "out of reach"), no tuco table made, same on a restart."""
    asyncio.run(_execute(pg_dsn, "CREATE TABLE tuco_tokens (name text PRIMARY KEY)"))
    expected = (
        "the database already has a table tuco_tokens that tuco did not create (another program's?); "
        "nothing was changed: give tuco a database or schema of its own"
    )
    for _ in range(2):
        result = _serve(tmp_path, pg_dsn)
        assert (result.returncode, result.stderr.decode()) == (1, f"tuco: {expected}\n")
        failed = next(line for line in _lines(result.stdout) if line["event"] == "start_failed")
        assert (failed["error"], failed["message"]) == ("log_format", expected)
    tables = asyncio.run(
        _fetch(pg_dsn, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'tuco%' ORDER BY tablename")
    )
    assert tables == ["tuco_tokens"]


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _fetch(dsn: str, statement: str) -> list[object]:
    conn = await asyncpg.connect(dsn)
    try:
        return [row[0] for row in await conn.fetch(statement)]
    finally:
        await conn.close()


_WRITES = [
    ("tuco_batches", "DELETE"),
    ("tuco_batches", "INSERT"),
    ("tuco_events", "INSERT"),
    ("tuco_head", "UPDATE"),
    ("tuco_leases", "DELETE"),
    ("tuco_leases", "INSERT"),
    ("tuco_leases", "UPDATE"),
    ("tuco_state", "DELETE"),
    ("tuco_state", "INSERT"),
    ("tuco_state", "UPDATE"),
    ("tuco_tokens", "DELETE"),
    ("tuco_tokens", "INSERT"),
]


@pytest.mark.postgres
def test_a_role_that_cannot_write_is_not_ready_and_says_which_privilege_it_lacks(tuco: StartTuco, pg_dsn: str) -> None:
    """A SELECT-only role: /readyz 503 naming the missing grants, writes 503 log_read_only (not "out of reach"),
    reads served; once granted, ready and writing again without a restart."""
    role = f"tuco_ro_{uuid.uuid4().hex[:8]}"
    owner = tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)  # creates the schema, writes a key
    with owner.client() as http:
        assert http.put("/v1/key/k", content=b"v").status_code == 201
    assert owner.terminate() == 0
    asyncio.run(_execute(pg_dsn, f"CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    try:
        server = tuco(wait_ready=False, TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=_url(pg_dsn, user=role))
        with server.client() as http:
            ready = _poll(http, lambda r: r.json().get("phase") == "serving")
            assert (ready.status_code, ready.json()["ready"], ready.json()["error"]) == (503, False, "log_read_only")
            assert ready.json()["missing_privileges"] == [f"{what} on {table}" for table, what in _WRITES]
            refused = http.put("/v1/key/k", content=b"w")
            assert (refused.status_code, refused.json()["error"]) == (503, "log_read_only")
            assert refused.json()["message"] == (
                "not stored: the database role cannot write (a privilege is missing; /readyz names it); "
                "reads are still served"
            )
            deleted = http.delete("/v1/key/k")
            assert (deleted.status_code, deleted.json()["error"]) == (503, "log_read_only")
            got = http.get("/v1/key/k")
            assert (got.status_code, got.content) == (200, b"v")
            grants = "; ".join(f"GRANT {what} ON {table} TO {role}" for table, what in _WRITES)
            asyncio.run(_execute(pg_dsn, grants))
            _poll(http, lambda r: r.status_code == 200)
            assert http.put("/v1/key/k", content=b"w").status_code == 201
        assert server.terminate() == 0
        warnings = [line for line in server.events() if line.get("event") == "database_read_only"]
        assert [line["missing_privileges"] for line in warnings][:1] == [[f"{w} on {t}" for t, w in _WRITES]]
    finally:
        asyncio.run(_execute(pg_dsn, f"DROP OWNED BY {role}"))
        asyncio.run(_execute(pg_dsn, f"DROP ROLE {role}"))


def _poll(http: httpx.Client, done: Callable[[httpx.Response], bool], timeout: float = 60.0) -> httpx.Response:
    """GET /readyz until ``done`` holds for its answer; fail after a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = http.get("/readyz")
        if done(answer):
            return answer
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.05)


@pytest.mark.postgres
def test_a_role_whose_sessions_are_read_only_exits_1_saying_so(tmp_path: Path, pg_dsn: str) -> None:
    """default_transaction_read_only on for the role: after the connect time-out, exit 1 saying no host takes
    writes (not "cannot reach")."""
    role = f"tuco_ro_{uuid.uuid4().hex[:8]}"
    asyncio.run(_execute(pg_dsn, f"CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET default_transaction_read_only = on"))
    try:
        url = _url(pg_dsn, user=role)
        result = _serve(tmp_path, url, TUCO_DATABASE_CONNECT_TIMEOUT_SECONDS="1")
        assert (result.returncode, result.stderr.decode()) == (
            1,
            f"tuco: cannot use the database {_redacted(url)}: no host takes writes (a standby, or "
            "default_transaction_read_only on for this role or database); gave up after 1.0 s\n",
        )
    finally:
        asyncio.run(_execute(pg_dsn, f"DROP ROLE {role}"))
