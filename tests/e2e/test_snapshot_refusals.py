"""Damaged snapshots are refused by verify and restore; a restore killed midway leaves nothing half-loaded."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from zlib import crc32  # zlib's own, beside the one tuco uses

import asyncpg
import pytest

from tests.e2e.process import TucoProcess
from tuco.core.snapshot import KeyRecord, LeaseRecord, SnapshotEncoder

StartTuco = Callable[..., TucoProcess]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``tuco ARGS`` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "tuco", *args], capture_output=True, text=True, timeout=300, check=False
    )


def snapshot_bytes(keys: int = 20, value: bytes = b"value") -> bytes:
    """A whole snapshot at revision keys + 1: ``keys`` keys and a lease."""
    encoder = SnapshotEncoder(keys + 1, 1_765_000_000_000)
    parts = [encoder.header(), encoder.lease(LeaseRecord(keys + 1, 60_000, 1_900_000_000_000))]
    parts += [encoder.key(KeyRecord(f"k/{n:07d}", value, n + 1, n + 1, 1)) for n in range(keys)]
    return b"".join(parts) + encoder.trailer()


def damaged(kind: str) -> bytes:
    data = bytearray(snapshot_bytes())
    if kind == "truncated":
        return bytes(data[:-30])
    if kind == "bit-flipped":
        data[200] ^= 0x04
    elif kind == "wrong-version":
        struct.pack_into("<I", data, 8, 9)
    elif kind == "wrong-checksum":  # the trailer's digest changed, its own CRC made good: only the SHA-256 tells
        data[-1] ^= 0xFF
        trailer = bytes(data[-69:])
        struct.pack_into("<I", data, len(data) - 73, crc32(trailer))
    return bytes(data)


MESSAGES = {
    "truncated": "truncated: it ends inside the record at offset",
    "bit-flipped": "fails its checksum (damaged)",
    "wrong-version": "snapshot format version 9 is not supported (this build reads version 1)",
    "wrong-checksum": "the SHA-256 digest in the trailer does not match the file's contents (damaged)",
}


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_verify_and_a_file_restore_refuse_a_damaged_snapshot(tmp_path: Path, kind: str) -> None:
    """verify exits 1 naming the damage; restore exits 1 the same way and writes no log."""
    path = tmp_path / "bad.snap"
    path.write_bytes(damaged(kind))
    verified = cli("snapshot", "verify", str(path))
    assert verified.returncode == 1
    assert verified.stdout == ""
    assert verified.stderr.startswith(f"tuco: {path}: ")
    assert MESSAGES[kind] in verified.stderr
    target = tmp_path / "data"
    restored = cli("snapshot", "restore", str(path), "--data-dir", str(target))
    assert restored.returncode == 1
    assert MESSAGES[kind] in restored.stderr
    assert not (target / "tuco.log").exists()


def test_verify_and_inspect_describe_a_whole_snapshot(tmp_path: Path) -> None:
    """A whole snapshot verifies (exit 0) and inspect shows its revision, counts and digest."""
    path = tmp_path / "good.snap"
    path.write_bytes(snapshot_bytes())
    verified = cli("snapshot", "verify", str(path))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.splitlines()[:2] == [f"ok {path}", "format_version\t1"]
    shown = cli("snapshot", "inspect", str(path), "-o", "json")
    assert shown.returncode == 0
    assert '"revision": 21' in shown.stdout and '"keys": 20' in shown.stdout and '"leases": 1' in shown.stdout
    assert '"taken_at": "2025-12-06T05:46:40Z"' in shown.stdout


def test_a_restore_into_a_directory_with_a_log_is_refused(tmp_path: Path) -> None:
    """A restore never overwrites: a data directory that holds tuco.log is refused, the log untouched."""
    path = tmp_path / "good.snap"
    path.write_bytes(snapshot_bytes())
    target = tmp_path / "data"
    target.mkdir()
    (target / "tuco.log").write_bytes(b"not mine to replace")
    done = cli("snapshot", "restore", str(path), "--data-dir", str(target))
    assert done.returncode == 1
    assert "exists: a restore makes a new log" in done.stderr
    assert (target / "tuco.log").read_bytes() == b"not mine to replace"
    assert cli("snapshot", "restore", str(path)).returncode == 2


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
def test_a_file_restore_killed_midway_leaves_no_log_and_a_rerun_restores(tuco: StartTuco, tmp_path: Path) -> None:
    """SIGKILL while the log is being written: no tuco.log (nothing to start on); a rerun restores it whole."""
    path = tmp_path / "big.snap"
    path.write_bytes(snapshot_bytes(300_000, b"v" * 300))
    target = tmp_path / "data"
    loading = target / ".tuco.log.restoring"
    process = subprocess.Popen(
        [sys.executable, "-m", "tuco", "snapshot", "restore", str(path), "--data-dir", str(target)]
    )
    deadline = time.monotonic() + 120
    while not (loading.exists() and loading.stat().st_size > 1 << 20):
        assert process.poll() is None, "the restore ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (target / "tuco.log").exists()
    done = cli("snapshot", "restore", str(path), "--data-dir", str(target))
    assert done.returncode == 0, done.stderr
    assert not loading.exists()
    server = tuco(data_dir=target)
    with server.client() as http:
        answer = http.get("/v1/key/k%2F0299999")
        assert answer.status_code == 200
        assert answer.content == b"v" * 300
        assert answer.headers["etag"] == '"300000"'
        assert http.get("/v1/keys", params={"limit": 1}).headers["x-tuco-revision"] == "300001"


async def _tables(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname LIKE 'tuco\\_%'"))
    finally:
        await conn.close()


async def _copying(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%'"
            )
        )
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_a_postgres_restore_refuses_a_damaged_snapshot_and_leaves_the_database_empty(
    tmp_path: Path, pg_dsn: str, kind: str
) -> None:
    """restore --database-url exits 1 on damage and rolls back: not even the schema is left behind."""
    path = tmp_path / "bad.snap"
    path.write_bytes(damaged(kind))
    done = cli("snapshot", "restore", str(path), "--database-url", pg_dsn)
    assert done.returncode == 1
    assert MESSAGES[kind] in done.stderr
    assert asyncio.run(_tables(pg_dsn)) == 0


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
def test_a_postgres_restore_killed_midway_leaves_nothing_and_a_rerun_restores(
    tuco: StartTuco, tmp_path: Path, pg_dsn: str
) -> None:
    """SIGKILL during the COPY: the transaction dies with it, no table is left; a rerun restores it whole."""
    path = tmp_path / "big.snap"
    path.write_bytes(snapshot_bytes(200_000, b"v" * 300))
    process = subprocess.Popen(
        [sys.executable, "-m", "tuco", "snapshot", "restore", str(path), "--database-url", pg_dsn]
    )
    deadline = time.monotonic() + 120
    while not asyncio.run(_copying(pg_dsn)):
        assert process.poll() is None, "the restore ended before it could be killed"
        assert time.monotonic() < deadline
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    for _ in range(200):  # the server notices the dead connection and rolls back
        if asyncio.run(_tables(pg_dsn)) == 0:
            break
        time.sleep(0.05)
    assert asyncio.run(_tables(pg_dsn)) == 0
    done = cli("snapshot", "restore", str(path), "--database-url", pg_dsn)
    assert done.returncode == 0, done.stderr
    server = tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    with server.client() as http:
        answer = http.get("/v1/key/k%2F0199999")
        assert answer.status_code == 200
        assert answer.headers["etag"] == '"200000"'
        assert http.get("/v1/keys", params={"limit": 1}).headers["x-tuco-revision"] == "200001"
