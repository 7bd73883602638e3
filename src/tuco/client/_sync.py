"""The blocking client: each method sends one :class:`~tuco.client._calls.Call` with httpx."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from tuco.client import _calls as calls
from tuco.client import _history as history_calls
from tuco.client import _tokens as token_calls
from tuco.client import _txn as txn_calls
from tuco.client._calls import Answer, Call, Entry, Item, Lease, LeaseSummary, Page, RevokedLease, Written
from tuco.client._counter import Counter
from tuco.client._endpoints import Endpoints, unreachable
from tuco.client._history import HistoryPage
from tuco.client._keeper import KeptLease
from tuco.client._options import Backoff, Options
from tuco.client._session import Session
from tuco.client._tokens import Grant, Token
from tuco.client._txn import RangeDeleted, Txn, TxnResult
from tuco.client._watch import WatchCursor, WatchEvent
from tuco.errors import ServerUnreachableError, TooManyWatchersError, UnavailableError

__all__ = ["Client"]

T = TypeVar("T")

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Client:
    """A connection pool to one tuco server (or a balancer in front of several).

    Configured by arguments, else ``TUCO_URL``, ``TUCO_TOKEN`` (or ``TUCO_TOKEN_FILE``),
    ``TUCO_CA_FILE``, ``TUCO_CLIENT_CERT_FILE``/``TUCO_CLIENT_KEY_FILE``. Errors are tuco's exception
    tree: :class:`~tuco.errors.NoSuchKeyError`, :class:`~tuco.errors.PreconditionFailedError`
    (with ``current``), :class:`~tuco.errors.ServerUnreachableError`... Idempotent calls
    are retried with backoff on connection errors and 503; conditional writes are not
    (their first attempt may have applied).
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        ca_file: str | Path | None = None,
        cert: tuple[str | Path, str | Path] | None = None,
        timeout: float = 30.0,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = Options.resolve(
            url if url is None or isinstance(url, str) else ",".join(url), token, ca_file, cert
        )
        self.backoff = backoff or Backoff()
        self.endpoints = Endpoints(self.options.urls)
        self._http = httpx.Client(
            verify=self.options.verify,
            headers=self.options.headers(),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def _run(self, call: Call[T]) -> T:
        attempt = 0
        tries = self.endpoints.attempts(self.backoff.attempts)
        while True:
            base = self.endpoints.pick(call)
            try:
                response = self._http.request(
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
            time.sleep(delay)
            attempt += 1

    # keys

    def get(self, key: str, *, consistent: bool = False, revision: int | None = None) -> Entry:
        """The key's value and revisions (as of ``revision``); :class:`~tuco.errors.NoSuchKeyError` if absent.

        A ``revision`` older than the server's history raises :class:`~tuco.errors.HistoryCompactedError`.
        """
        return self._run(calls.get(key, consistent=consistent, revision=revision))

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
    ) -> Written:
        """Store ``value`` (str is UTF-8); with a condition, compare-and-swap. ``ttl`` in seconds."""
        return self._run(
            calls.put(
                key, value, if_revision=if_revision, if_absent=if_absent, if_exists=if_exists, ttl=ttl, lease=lease
            )
        )

    def delete(self, key: str, *, if_revision: int | None = None, if_exists: bool = False) -> Written:
        """Delete the key (fine if absent, unless a condition says otherwise)."""
        return self._run(calls.delete(key, if_revision=if_revision, if_exists=if_exists))

    def txn(self) -> Txn[TxnResult]:
        """A transaction to build (``when``, ``then``, ``otherwise``) and ``commit()``; see :class:`Txn`."""
        return Txn(self._run)

    def delete_prefix(self, prefix: str) -> RangeDeleted:
        """Delete every key under ``prefix`` at one revision (the empty prefix: every key)."""
        return self._run(txn_calls.delete_prefix(prefix))

    def history(self, key: str, *, limit: int | None = None, before: int | None = None) -> HistoryPage:
        """Who changed ``key``, when and how: a page of its retained changes below ``before``, newest first."""
        return self._run(history_calls.history(key, limit=limit, before=before))

    def wait(self, key: str, revision: int, *, timeout: float = 30.0) -> tuple[bool, Entry | None]:
        """Long poll: ``(changed, entry)`` when the key changed at ``revision`` or later, or after ``timeout``.

        ``revision`` is the last one seen plus one; :class:`~tuco.errors.RevisionAheadError` if the
        server's store has not reached ``revision`` - 1 (restored from an older backup: re-read the key).
        """
        return self._run(calls.wait(key, revision, timeout))

    def touch(self, key: str, ttl: float) -> Written:
        """Make ``key`` expire ``ttl`` seconds from now, without sending its value (NoSuchKeyError if absent)."""
        return self._run(calls.deadline(key, ttl))

    def persist(self, key: str) -> Written:
        """Make ``key`` never expire (its value kept); ``Written.expires_at`` is None."""
        return self._run(calls.deadline(key, None))

    # listing

    def pages(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> Iterator[Page]:
        """Every page of the keys under ``prefix``, all at the revision of the first."""
        token: str | None = None
        while True:
            page = self._run(calls.list_page(prefix, limit=page_size, keys_only=keys_only, page_token=token))
            yield page
            if page.next_page_token is None:
                return
            token = page.next_page_token

    def scan(self, prefix: str = "", *, page_size: int = 100, keys_only: bool = False) -> Iterator[Item]:
        """The keys under ``prefix`` in byte order, page by page (one consistent revision)."""
        for page in self.pages(prefix, page_size=page_size, keys_only=keys_only):
            yield from page.items

    # watch

    def watch(
        self,
        prefix: str | None = None,
        *,
        key: str | None = None,
        start_revision: int | None = None,
        read_timeout: float = 60.0,
        reconnect_for: float = 30.0,
    ) -> Iterator[WatchEvent]:
        """Every change under ``prefix`` (or to ``key``), forever; reconnects and resumes where it stopped.

        Gives up with :class:`~tuco.errors.ServerUnreachableError` after ``reconnect_for``
        seconds without a stream; :class:`~tuco.errors.HistoryCompactedError` if the start is
        no longer retained; :class:`~tuco.errors.RevisionAheadError` if the server's store is
        behind where the watch resumes (restored from an older backup: what was seen may be
        gone, so re-read the keys you need, then watch again without ``start_revision``).
        Close the iterator (or leave the ``for``) to end the watch.
        """
        cursor = WatchCursor(prefix=prefix, key=key, start_revision=start_revision)
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        while True:
            params, headers = cursor.request()
            base = self.endpoints.stream()
            try:
                with self._http.stream(
                    "GET", base + "/v1/watch", params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        cursor.check(Answer(response.status_code, response.headers, response.read()))
                    cursor.opened()
                    for line in response.iter_lines():
                        event = cursor.feed(line)
                        if event is not None:
                            yield event
                    continue  # the server ended the stream (cancel, shutdown): resume at once
            except (httpx.TransportError, UnavailableError, TooManyWatchersError) as exc:
                self.endpoints.failed(base)
                if cursor.lost(time.monotonic(), reconnect_for):
                    raise ServerUnreachableError(f"{base}: watch: {exc}") from exc
            time.sleep(self.backoff.jitter(cursor.attempts))
            cursor.attempts += 1

    # snapshots

    def snapshot(self, *, read_timeout: float = 300.0) -> Iterator[bytes]:
        """The server's state at one revision as snapshot bytes, chunk by chunk (admin); not retried.

        The chunks are the file :mod:`tuco.core.snapshot` describes; feed them to a
        :class:`~tuco.core.snapshot.SnapshotDecoder` to verify them (a stream that
        ended early lacks the trailer). Raises the answer's error (403, 503 snapshot_unavailable),
        :class:`~tuco.errors.ServerUnreachableError` if the connection fails.
        """
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        base = self.endpoints.stream()  # one replica's state: never spread over several
        try:
            with self._http.stream("GET", base + "/v1/snapshot", timeout=timeout) as response:
                if response.status_code != 200:
                    raise calls.error_from(Answer(response.status_code, response.headers, response.read()))
                yield from response.iter_raw(1 << 20)
        except httpx.TransportError as exc:
            raise ServerUnreachableError(f"{base}: snapshot: {exc or type(exc).__name__}") from exc

    # leases

    def grant(self, ttl: float) -> Lease:
        """A new lease of ``ttl`` seconds."""
        return self._run(calls.grant(ttl))

    def leases(self, page_size: int = 100) -> tuple[LeaseSummary, ...]:
        """Every live lease of this credential's (an admin's: all), in id order, read ``page_size`` at a time."""
        found: list[LeaseSummary] = []
        after: int | None = None
        while True:
            page, after = self._run(calls.list_leases(page_size, after))
            found.extend(page)
            if after is None:
                return tuple(found)

    def keepalive(self, lease: int) -> Lease:
        """Move the lease's end to ttl from now; :class:`~tuco.errors.LeaseNotFoundError` if it has ended."""
        return self._run(calls.keepalive(lease))

    def lease(self, lease: int) -> Lease:
        """The lease as the server knows it, with its keys."""
        return self._run(calls.lease_info(lease))

    def revoke(self, lease: int) -> RevokedLease:
        """End the lease now, deleting its keys."""
        return self._run(calls.revoke(lease))

    @contextmanager
    def keep_alive(self, lease: Lease) -> Iterator[KeptLease]:
        """Keep ``lease`` alive from a background thread while the block runs (every ttl/3).

        ``kept.lost`` is set once the lease has ended (or could not be renewed before its
        end): whatever it guarded (a lock) is no longer yours.
        """
        kept = KeptLease(lease)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(kept.interval()):
                try:
                    kept.renewed(self.keepalive(kept.lease.id))
                except Exception as exc:
                    if kept.failed(exc):
                        return

        thread = threading.Thread(target=renew, name=f"tuco-keepalive-{lease.id}", daemon=True)
        thread.start()
        try:
            yield kept
        finally:
            stop.set()
            thread.join()

    # tokens

    def create_token(
        self,
        grants: tuple[Grant, ...] | list[Grant],
        *,
        description: str = "",
        expires_at: str | None = None,
        cert: str | None = None,
    ) -> Token:
        """A new token with ``grants`` (admin); its ``token`` is the secret, shown only here."""
        return self._run(token_calls.create_token(tuple(grants), description, expires_at, cert))

    def tokens(self) -> tuple[Token, ...]:
        """Every live token, without secrets (admin)."""
        return self._run(token_calls.list_tokens())

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token by its id (admin)."""
        self._run(token_calls.revoke_token(token_id))

    # the server

    def health(self) -> bool:
        """True if the server answers ``/healthz``."""
        return self._run(calls.health())

    def readiness(self) -> dict[str, Any]:
        """The server's ``/readyz`` JSON (``ready`` true or false)."""
        return self._run(calls.readiness())

    # coordination

    def session(self, ttl: float = 10.0, *, on_lost: Callable[[Session], object] | None = None) -> Session:
        """A :class:`~tuco.client.Session` of ``ttl`` seconds: ``with client.session() as session:``."""
        return Session(self, ttl, on_lost=on_lost)

    def counter(self, key: str) -> Counter:
        """A :class:`~tuco.client.Counter` on ``key``."""
        return Counter(self, key)
