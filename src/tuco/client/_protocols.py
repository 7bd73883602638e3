"""What the coordination helpers need of a client and of a session, as protocols.

The helpers are built on the clients, and the clients hand them out
(``client.session()``); typing the helpers against these protocols instead of the
classes keeps the modules free of import cycles.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Protocol

from tuco.client._calls import Entry, Lease, Page, RevokedLease, Written
from tuco.client._watch import WatchEvent

__all__ = ["AsyncKeys", "AsyncSessionLike", "Keys", "SessionLike"]


class Keys(Protocol):
    """The blocking client's calls the helpers use (:class:`~tuco.client.Client` has them all)."""

    def get(self, key: str, *, consistent: bool = False) -> Entry: ...

    def put(
        self,
        key: str,
        value: bytes | str,
        *,
        if_revision: int | None = None,
        if_absent: bool = False,
        if_exists: bool = False,
        ttl: float | None = None,
        lease: int | None = None,
    ) -> Written: ...

    def delete(self, key: str, *, if_revision: int | None = None, if_exists: bool = False) -> Written: ...

    def wait(self, key: str, revision: int, *, timeout: float = 30.0) -> tuple[bool, Entry | None]: ...

    def pages(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> Iterator[Page]: ...

    def watch(
        self,
        prefix: str | None = None,
        *,
        key: str | None = None,
        start_revision: int | None = None,
        read_timeout: float = 60.0,
        reconnect_for: float = 30.0,
    ) -> Iterator[WatchEvent]: ...

    def grant(self, ttl: float) -> Lease: ...

    def keepalive(self, lease: int) -> Lease: ...

    def revoke(self, lease: int) -> RevokedLease: ...


class AsyncKeys(Protocol):
    """The asyncio client's calls the helpers use (:class:`~tuco.client.AsyncClient` has them all)."""

    async def get(self, key: str, *, consistent: bool = False) -> Entry: ...

    async def put(
        self,
        key: str,
        value: bytes | str,
        *,
        if_revision: int | None = None,
        if_absent: bool = False,
        if_exists: bool = False,
        ttl: float | None = None,
        lease: int | None = None,
    ) -> Written: ...

    async def delete(self, key: str, *, if_revision: int | None = None, if_exists: bool = False) -> Written: ...

    async def wait(self, key: str, revision: int, *, timeout: float = 30.0) -> tuple[bool, Entry | None]: ...

    def pages(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> AsyncIterator[Page]: ...

    def watch(
        self,
        prefix: str | None = None,
        *,
        key: str | None = None,
        start_revision: int | None = None,
        read_timeout: float = 60.0,
        reconnect_for: float = 30.0,
    ) -> AsyncIterator[WatchEvent]: ...

    async def grant(self, ttl: float) -> Lease: ...

    async def keepalive(self, lease: int) -> Lease: ...

    async def revoke(self, lease: int) -> RevokedLease: ...


class SessionLike(Protocol):
    """What a lock needs of its (blocking) session."""

    client: Keys
    ttl: float
    lost: threading.Event

    @property
    def lease_id(self) -> int: ...

    def alive(self) -> bool: ...

    def check(self) -> None: ...


class AsyncSessionLike(Protocol):
    """What an asyncio lock needs of its session."""

    client: AsyncKeys
    ttl: float
    lost: asyncio.Event

    @property
    def lease_id(self) -> int: ...

    def alive(self) -> bool: ...

    def check(self) -> None: ...
