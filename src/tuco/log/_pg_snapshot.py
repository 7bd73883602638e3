"""The PostgreSQL state at one revision, read for a snapshot: one repeatable-read, read-only transaction.

A connection of its own (never one of the writers' pool), ``REPEATABLE READ
READ ONLY``: every statement sees the same database snapshot, the head and
the state tables agree, and no writer waits for it (PostgreSQL's MVCC). The
state is read with a server-side cursor in batches, so memory holds one batch.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

import asyncpg

from tuco.core.snapshot import Item, KeyRecord, LeaseRecord, TokenEntry
from tuco.core.tokens import decode_record
from tuco.log import _pg_schema as sql

__all__ = ["read_state"]

_STATE = "SELECT key, value, create_revision, sequence, version, deadline, lease FROM tuco_state"
_BATCH = 500


async def read_state(
    connect: Callable[[], Awaitable[asyncpg.Connection]], now: int
) -> AsyncGenerator[tuple[int, Sequence[Item]]]:
    """The head's revision with the leases and live tokens, then the keys in batches, all in one database snapshot."""
    conn = await connect()
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            revision = int(await conn.fetchval("SELECT sequence FROM tuco_head WHERE id = 1"))
            first: list[Item] = [
                LeaseRecord(row[0], row[1], row[2], bytes(row[3]).decode("utf-8", "replace"))
                for row in await conn.fetch(sql.LIVE_LEASES)
            ]
            for sequence, id, record in await conn.fetch(sql.LIVE_TOKENS):
                name = bytes(id).decode()
                try:
                    expired = decode_record(name, bytes(record), sequence).expired(now)
                except (ValueError, KeyError, TypeError):  # unreadable: the store refuses it too
                    continue
                if not expired:
                    first.append(TokenEntry(name, bytes(record), sequence))
            yield revision, first
            cursor = await conn.cursor(_STATE)
            while rows := await cursor.fetch(_BATCH):
                yield (
                    revision,
                    [
                        KeyRecord(bytes(r[0]).decode(), bytes(r[1]), r[2], r[3], r[4], r[5] or 0, r[6] or 0)
                        for r in rows
                    ],
                )
    finally:
        await conn.close()
