"""The Service's lease and token operations: lease owners, grants and keepalives, tokens made and revoked.

A part of :class:`~tuco.service.Service` (its base class) kept in a module of its own so the
service reads as its lifecycle and key operations; everything here works through the same
store, log and caps the service holds.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import secrets
from collections.abc import Awaitable, Callable, Sequence

from tuco.core.events import Event, EventType, Expiry, Precondition
from tuco.core.leases import Lease, may_use
from tuco.core.origin import LEASE_REVOKE, Reason, new_origin
from tuco.core.store import Store
from tuco.core.tokens import Grant, Principal, TokenRecord, digest, encode_record, format_token
from tuco.errors import (
    ForbiddenError,
    LeaseNotFoundError,
    PreconditionFailedError,
    TokenLimitError,
    TokenNotFoundError,
)
from tuco.limits import Caps
from tuco.ports import TransactionLog

__all__ = ["LeasesAndTokens"]

_REVOKED = new_origin(LEASE_REVOKE, 0, Reason.LEASE_REVOKED)
"""What a revoke's deletes (and the revoke itself) are recorded as."""


class LeasesAndTokens:
    """Leases (grant, keepalive, revoke, who may use one) and tokens (create, revoke), over the service's parts."""

    store: Store
    log: TransactionLog
    caps: Caps

    def grant(self, ttl_ms: int, owner: Principal | None = None) -> Awaitable[Event]:
        """Grant a lease for ``ttl_ms`` owned by ``owner`` (None: nobody, authentication is off).

        The event's ``lease`` is its id, ``deadline`` its end unless kept alive. Raises LeaseLimitError
        at TUCO_MAX_LEASES, or at ``owner``'s share of it (admins have none), grants in flight included.
        """
        self.caps.check_ttl(ttl_ms)
        value = owner.name.encode("utf-8") if owner is not None else b""
        write = functools.partial(self.log.write_expiring, EventType.LEASE_GRANT, "", value, None, Expiry(ttl=ttl_ms))
        return self.caps.grant(owner, write)

    def owned_lease(self, id: int, by: Principal | None) -> Lease | None:
        """Lease ``id`` as ``by`` sees it: None if there is none or it is another principal's (admins see every one).

        ``by`` None (authentication off) sees every lease.
        """
        found = self.store.leases.get(id)
        if found is None or (by is not None and not may_use(found, by.name, by.admin)):
            return None
        return found

    def keepalive(self, lease: int, by: Principal | None = None) -> Awaitable[Event]:
        """Move the lease's deadline to its ttl from now; the awaitable raises LeaseNotFoundError if it is gone.

        Raises LeaseNotFoundError for a lease that is not ``by``'s.
        """
        write = functools.partial(
            self.log.write_expiring, EventType.LEASE_KEEPALIVE, "", b"", None, Expiry(lease=lease)
        )
        if by is not None:
            found = self.store.leases.get(lease)
            if found is None:
                return self._when_owned(lease, by, lambda _: write())
            self._check_owner(found, by)
        return write()

    async def _when_owned(self, lease: int, by: Principal, write: Callable[[Lease], Awaitable[Event]]) -> Event:
        """``write(lease)`` once lease ``lease``, unknown here, turned out ``by``'s after catching up with the log.

        A lease granted on another replica a moment ago is known here only then;
        its owner never changes, so checking it before the write is enough.
        """
        await self.log.catch_up()
        found = self.store.leases.get(lease)
        if found is None:
            raise LeaseNotFoundError(lease)
        self._check_owner(found, by)
        return await write(found)

    @staticmethod
    def _check_owner(lease: Lease, by: Principal | None) -> None:
        """LeaseNotFoundError unless ``by`` may use ``lease``: to everyone else it does not exist."""
        if by is not None and not may_use(lease, by.name, by.admin):
            raise LeaseNotFoundError(lease.id)

    async def revoke(
        self, lease: int, allowed: Callable[[str], bool] | None = None, by: Principal | None = None
    ) -> tuple[Event, int]:
        """Delete the lease's keys (each at the revision it has), then the lease; return its event and keys deleted.

        A key rewritten meanwhile is not deleted by its DELETE; if it is still
        on the lease when the lease goes, it expires at once (the expirer deletes it).
        Raises LeaseNotFoundError for a lease that is not ``by``'s (checked after
        catching up). With ``allowed``, every key attached (as known then) must
        pass it, else ForbiddenError and nothing is deleted.
        """
        await self.log.catch_up()  # the keys another replica attached are known here
        found = self.store.leases.get(lease)
        if found is None:
            raise LeaseNotFoundError(lease)
        self._check_owner(found, by)
        deleted = 0
        keys = sorted(found.keys)
        if allowed is not None and not all(allowed(key) for key in keys):
            raise ForbiddenError("the token has no write grant on every key of this lease")
        outcomes = await asyncio.gather(
            *(self.log.write_delete(key, Precondition(self.store.mod_revision(key)), _REVOKED) for key in keys),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, Event):
                deleted += 1
            elif not isinstance(outcome, PreconditionFailedError):
                raise outcome
        event = await self.log.write_expiring(EventType.LEASE_REVOKE, "", b"", None, Expiry(lease=lease), _REVOKED)
        return event, deleted

    # -- tokens -------------------------------------------------------------------

    async def create_token(
        self, description: str, grants: Sequence[Grant], *, expires_at: int = 0, cert: str = ""
    ) -> tuple[TokenRecord, str | None]:
        """Create a token (or, with ``cert``, grants for a certificate identity); return it and its secret token.

        The secret is made here and returned this once; the log keeps only its SHA-256.
        Raises TokenLimitError over MAX_TOKENS live tokens.
        """
        self.caps.check_tokens()
        id = secrets.token_hex(8)
        token = None
        sha256 = b""
        if not cert:
            secret = secrets.token_urlsafe(32)
            token = format_token(id, secret)
            sha256 = digest(secret.encode("ascii"))
        record = TokenRecord(id, description, tuple(grants), expires_at, sha256, cert)
        write = functools.partial(self.log.write_expiring, EventType.TOKEN_CREATE, id, encode_record(record), None)
        try:
            event = await self.caps.create_token(lambda: write(Expiry()))
        except LeaseNotFoundError:  # the database refused it: that id exists already (64 random bits: never)
            raise TokenLimitError("a token with that id exists; try again") from None
        return record._replace(created=event.sequence), token

    async def revoke_token(self, id: str) -> Event:
        """Revoke token ``id``; raises TokenNotFoundError if there is none."""
        if self.store.tokens.get(id) is None:
            await self.log.catch_up()  # created on another replica a moment ago?
            if self.store.tokens.get(id) is None:
                raise TokenNotFoundError(id)
        try:
            return await self.log.write_expiring(EventType.TOKEN_REVOKE, id, b"", None, Expiry())
        except LeaseNotFoundError:  # another replica revoked it first
            raise TokenNotFoundError(id) from None

    def leases_of(self, by: Principal | None, after: int, count: int) -> list[Lease]:
        """Up to ``count`` live leases ``by`` may see (its own; all for an admin or with authentication off), ids above
        ``after``, by id: one pass and a heap of ``count``, so paging through many leases never sorts them all."""
        now = self.log.now_ms()
        return heapq.nsmallest(
            count,
            (
                lease
                for lease in self.store.leases
                if lease.id > after and lease.deadline > now and (by is None or may_use(lease, by.name, by.admin))
            ),
            key=lambda lease: lease.id,
        )
