"""The asyncio client: the same calls as :class:`~tuco.client.Client`, sent with ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from tuco._tasks import stop_task
from tuco.client import _calls as calls
from tuco.client import _history as history_calls
from tuco.client import _tokens as token_calls
from tuco.client import _txn as txn_calls
from tuco.client._calls import Answer, Call, Entry, Item, Lease, LeaseSummary, Page, RevokedLease, Written
from tuco.client._counter import AsyncCounter
from tuco.client._endpoints import Endpoints, unreachable
from tuco.client._history import HistoryPage
from tuco.client._keeper import KeptLease
from tuco.client._options import Backoff, Options
from tuco.client._session import AsyncSession
from tuco.client._tokens import Grant, Token
from tuco.client._txn import RangeDeleted, Txn, TxnResult
from tuco.client._watch import WatchCursor, WatchEvent
from tuco.errors import ServerUnreachableError, TooManyWatchersError, UnavailableError

__all__ = ["AsyncClient"]

T = TypeVar("T")

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class AsyncClient:
    """:class:`~tuco.client.Client` for asyncio: same arguments, same errors, same retry rules; await each call."""

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        ca_file: str | Path | None = None,
        cert: tuple[str | Path, str | Path] | None = None,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = Options.resolve(
            url if url is None or isinstance(url, str) else ",".join(url), token, ca_file, cert
        )
        self.backoff = backoff or Backoff()
        self.endpoints = Endpoints(self.options.urls)
        self._http = httpx.AsyncClient(
            verify=self.options.verify,
            headers=self.options.headers(),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def _run(self, call: Call[T]) -> T:
        attempt = 0
        tries = self.endpoints.attempts(self.backoff.attempts)
        while True:
            base = self.endpoints.pick(call)
            try:
                response = await self._http.request(
                    call.method,
                    base + call.path,
                    params=call.params,
                    headers=call.headers,
                    content=call.body,
                    timeout=call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                self.endpoints.failed(base)
                sent = not isinstance(exc, _NEVER_SENT)
                delay = self.backoff.delay(call, attempt, None, sent=sent, tries=tries)
                if delay is None:
                    raise unreachable(call, base, exc, sent=sent) from exc
            else:
                answer = Answer(response.status_code, response.headers, response.content)
                if answer.status == 503:
                    self.endpoints.failed(base)
                delay = self.backoff.delay(call, attempt, answer, sent=True, tries=tries)
                if delay is None:
                    return call.parse(answer)
            await asyncio.sleep(delay)
            attempt += 1

    # keys

    async def get(self, key: str, *, consistent: bool = False, revision: int | None = None) -> Entry:
        """The key's value and revisions (as of ``revision``); :class:`~tuco.errors.NoSuchKeyError` if absent."""
        return await self._run(calls.get(key, consistent=consistent, revision=revision))

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
    ) -> Written:
        """Store ``value`` (str is UTF-8); with a condition, compare-and-swap. ``ttl`` in seconds."""
        return await self._run(
            calls.put(
                key, value, if_revision=if_revision, if_absent=if_absent, if_exists=if_exists, ttl=ttl, lease=lease
            )
        )

    async def delete(self, key: str, *, if_revision: int | None = None, if_exists: bool = False) -> Written:
        """Delete the key (fine if absent, unless a condition says otherwise)."""
        return await self._run(calls.delete(key, if_revision=if_revision, if_exists=if_exists))

    def txn(self) -> Txn[Awaitable[TxnResult]]:
        """A transaction to build (``when``, ``then``, ``otherwise``); ``await commit()``; see :class:`Txn`."""
        return Txn(self._run)

    async def delete_prefix(self, prefix: str) -> RangeDeleted:
        """Delete every key under ``prefix`` at one revision (the empty prefix: every key)."""
        return await self._run(txn_calls.delete_prefix(prefix))

    async def history(self, key: str, *, limit: int | None = None, before: int | None = None) -> HistoryPage:
        """Who changed ``key``, when and how: a page of its retained changes below ``before``, newest first."""
        return await self._run(history_calls.history(key, limit=limit, before=before))

    async def wait(self, key: str, revision: int, *, timeout: float = 30.0) -> tuple[bool, Entry | None]:
        """Long poll: ``(changed, entry)`` when the key changed at ``revision`` or later, or after ``timeout``.

        ``revision`` is the last one seen plus one; :class:`~tuco.errors.RevisionAheadError` if the
        server's store has not reached ``revision`` - 1 (restored from an older backup: re-read the key).
        """
        return await self._run(calls.wait(key, revision, timeout))

    async def touch(self, key: str, ttl: float) -> Written:
        """Make ``key`` expire ``ttl`` seconds from now, without sending its value (NoSuchKeyError if absent)."""
        return await self._run(calls.deadline(key, ttl))

    async def persist(self, key: str) -> Written:
        """Make ``key`` never expire (its value kept); ``Written.expires_at`` is None."""
        return await self._run(calls.deadline(key, None))

    # listing

    async def pages(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> AsyncIterator[Page]:
        """Every page of the keys under ``prefix``, all at the revision of the first."""
        token: str | None = None
        while True:
            page = await self._run(calls.list_page(prefix, limit=page_size, keys_only=keys_only, page_token=token))
            yield page
            if page.next_page_token is None:
                return
            token = page.next_page_token

    async def scan(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> AsyncIterator[Item]:
        """The keys under ``prefix`` in byte order, page by page (one consistent revision)."""
        async for page in self.pages(prefix, page_size=page_size, keys_only=keys_only):
            for item in page.items:
                yield item

    # watch

    async def watch(
        self,
        prefix: str | None = None,
        *,
        key: str | None = None,
        start_revision: int | None = None,
        read_timeout: float = 60.0,
        reconnect_for: float = 30.0,
    ) -> AsyncIterator[WatchEvent]:
        """Every change under ``prefix`` (or to ``key``), forever; reconnects and resumes where it stopped.

        As :meth:`tuco.client.Client.watch`; ``aclose()`` the iterator (or leave the ``async for``) to end it.
        """
        cursor = WatchCursor(prefix=prefix, key=key, start_revision=start_revision)
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        while True:
            params, headers = cursor.request()
            base = self.endpoints.stream()
            try:
                async with self._http.stream(
                    "GET", base + "/v1/watch", params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        cursor.check(Answer(response.status_code, response.headers, await response.aread()))
                    cursor.opened()
                    async for line in response.aiter_lines():
                        event = cursor.feed(line)
                        if event is not None:
                            yield event
                    continue  # the server ended the stream (cancel, shutdown): resume at once
            except (httpx.TransportError, UnavailableError, TooManyWatchersError) as exc:
                self.endpoints.failed(base)
                if cursor.lost(time.monotonic(), reconnect_for):
                    raise ServerUnreachableError(f"{base}: watch: {exc}") from exc
            await asyncio.sleep(self.backoff.jitter(cursor.attempts))
            cursor.attempts += 1

    # snapshots

    async def snapshot(self, *, read_timeout: float = 300.0) -> AsyncIterator[bytes]:
        """The server's state at one revision as snapshot bytes, chunk by chunk: :meth:`Client.snapshot`."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        base = self.endpoints.stream()  # one replica's state: never spread over several
        try:
            async with self._http.stream("GET", base + "/v1/snapshot", timeout=timeout) as response:
                if response.status_code != 200:
                    raise calls.error_from(Answer(response.status_code, response.headers, await response.aread()))
                async for chunk in response.aiter_raw(1 << 20):
                    yield chunk
        except httpx.TransportError as exc:
            raise ServerUnreachableError(f"{base}: snapshot: {exc or type(exc).__name__}") from exc

    # leases

    async def grant(self, ttl: float) -> Lease:
        """A new lease of ``ttl`` seconds."""
        return await self._run(calls.grant(ttl))

    async def leases(self, page_size: int = 100) -> tuple[LeaseSummary, ...]:
        """Every live lease of this credential's (an admin's: all), in id order, read ``page_size`` at a time."""
        found: list[LeaseSummary] = []
        after: int | None = None
        while True:
            page, after = await self._run(calls.list_leases(page_size, after))
            found.extend(page)
            if after is None:
                return tuple(found)

    async def keepalive(self, lease: int) -> Lease:
        """Move the lease's end to ttl from now; :class:`~tuco.errors.LeaseNotFoundError` if it has ended."""
        return await self._run(calls.keepalive(lease))

    async def lease(self, lease: int) -> Lease:
        """The lease as the server knows it, with its keys."""
        return await self._run(calls.lease_info(lease))

    async def revoke(self, lease: int) -> RevokedLease:
        """End the lease now, deleting its keys."""
        return await self._run(calls.revoke(lease))

    @asynccontextmanager
    async def keep_alive(self, lease: Lease) -> AsyncIterator[KeptLease]:
        """Keep ``lease`` alive from a task while the block runs (every ttl/3); see ``KeptLease.lost``."""
        kept = KeptLease(lease)

        async def renew() -> None:
            while True:
                await asyncio.sleep(kept.interval())
                try:
                    kept.renewed(await self.keepalive(kept.lease.id))
                except Exception as exc:
                    if kept.failed(exc):
                        return

        task = asyncio.create_task(renew(), name=f"tuco-keepalive-{lease.id}")
        try:
            yield kept
        finally:
            await stop_task(task)

    # tokens

    async def create_token(
        self,
        grants: tuple[Grant, ...] | list[Grant],
        *,
        description: str = "",
        expires_at: str | None = None,
        cert: str | None = None,
    ) -> Token:
        """A new token with ``grants`` (admin); its ``token`` is the secret, shown only here."""
        return await self._run(token_calls.create_token(tuple(grants), description, expires_at, cert))

    async def tokens(self) -> tuple[Token, ...]:
        """Every live token, without secrets (admin)."""
        return await self._run(token_calls.list_tokens())

    async def revoke_token(self, token_id: str) -> None:
        """Revoke a token by its id (admin)."""
        await self._run(token_calls.revoke_token(token_id))

    # the server

    async def health(self) -> bool:
        """True if the server answers ``/healthz``."""
        return await self._run(calls.health())

    async def readiness(self) -> dict[str, Any]:
        """The server's ``/readyz`` JSON (``ready`` true or false)."""
        return await self._run(calls.readiness())

    # coordination

    def session(self, ttl: float = 10.0, *, on_lost: Callable[[AsyncSession], object] | None = None) -> AsyncSession:
        """An :class:`~tuco.client.AsyncSession` of ``ttl`` seconds: ``async with client.session() as session:``."""
        return AsyncSession(self, ttl, on_lost=on_lost)

    def counter(self, key: str) -> AsyncCounter:
        """An :class:`~tuco.client.AsyncCounter` on ``key``."""
        return AsyncCounter(self, key)
