"""The lease routes: grant, keepalive, read, revoke, and ``GET /v1/leases``.

``GET /v1/leases`` lists the caller's own live leases (an admin's: every one), a page at a time.

A page is at most ``limit`` leases in id order, after the lease id ``after``;
``next_after`` names the id to pass for the next page (null on the last). It
calls only :class:`~tuco.service.Service` methods.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from tuco.core.events import Event
from tuco.core.tokens import Permission, Principal
from tuco.errors import InvalidRequestError, LeaseNotFoundError, LogError, TucoError
from tuco.http.answers import error_answer, json_response, refusal
from tuco.http.audit import may
from tuco.http.handlers._base import Context
from tuco.http.handlers._writes import Done, write_refused
from tuco.http.messages import Answer, Request, Response
from tuco.http.params import bounded, grant_ttl, lease_id
from tuco.service import Service

__all__ = [
    "DEFAULT_LEASE_LIMIT",
    "MAX_LEASE_LIMIT",
    "grant",
    "keepalive",
    "lease",
    "lease_answer",
    "leases",
    "list_leases",
    "revoke",
]

DEFAULT_LEASE_LIMIT = 100
MAX_LEASE_LIMIT = 1000
_MAX_LEASE_ID = (1 << 63) - 1


def list_leases(service: Service, request: Request) -> Response:
    """One page of the leases ``request.principal`` may see: id, ttl, expires_at, remaining (s) and key_count."""
    limit = bounded(request.param(b"limit"), "limit", DEFAULT_LEASE_LIMIT, 1, MAX_LEASE_LIMIT)
    after = bounded(request.param(b"after"), "after", 0, 0, _MAX_LEASE_ID)
    now = service.now_ms()
    leases = service.leases_of(request.principal, after, limit + 1)  # one more says whether a next page exists
    page = leases[:limit]
    shown = [
        {
            "id": lease.id,
            "ttl": lease.ttl / 1000,
            "expires_at": lease.deadline,
            "remaining": max(0, lease.deadline - now) / 1000,
            "key_count": len(lease.keys),
        }
        for lease in page
    ]
    next_after = page[-1].id if len(leases) > limit else None
    return json_response(200, {"leases": shown, "next_after": next_after}, service.revision)


def leases(ctx: Context, request: Request, segment: bytes) -> Answer:
    """POST /v1/leases grants one; GET lists the caller's own."""
    if request.method == b"POST":
        return grant(ctx, request, segment)
    try:
        return list_leases(ctx.service, request)
    except InvalidRequestError as exc:
        return error_answer(exc)


def grant(ctx: Context, request: Request, segment: bytes) -> Answer:
    """POST /v1/leases: a new lease of the body's ttl, owned by the caller (201)."""

    def write(service: Service) -> Awaitable[Event]:
        return service.grant(grant_ttl(request.body, service.limits.max_ttl_ms), request.principal)

    return _lease_write(ctx, write, 201, "no lease granted")


def keepalive(ctx: Context, request: Request, segment: bytes) -> Answer:
    """POST /v1/leases/{id}/keepalive: the caller's lease ends ttl from now (200)."""

    def write(service: Service) -> Awaitable[Event]:
        return service.keepalive(lease_id(segment, LeaseNotFoundError(0)), request.principal)

    return _lease_write(ctx, write, 200, "not kept alive")


def _lease_write(ctx: Context, write: Callable[[Service], Awaitable[Event]], status: int, doing: str) -> Answer:
    """The answer to a lease's grant or keepalive: a refusal now (bad input, a full log), or once it is written."""
    try:
        written = write(ctx.service)
    except TucoError as exc:
        return write_refused(exc, doing)
    return ctx.writes.answer_lease_write(written, lease_answer(status), doing)


def lease(ctx: Context, request: Request, segment: bytes) -> Answer:
    """GET /v1/leases/{id} reads one of the caller's leases; DELETE revokes it."""
    service = ctx.service
    try:
        lease = lease_id(segment, LeaseNotFoundError(0))
    except LeaseNotFoundError as exc:
        return error_answer(exc)
    if request.method == b"DELETE":  # the keys it deletes each need write: asked after catching up, per key
        allowed = None if request.caller is None else functools.partial(may, request, Permission.WRITE)
        return revoke(service, lease, allowed, request.principal)
    found = service.owned_lease(lease, request.principal)
    if found is None or found.deadline <= service.now_ms():
        return error_answer(LeaseNotFoundError(lease))
    payload = {"id": lease, "ttl": found.ttl / 1000, "expires_at": found.deadline, "keys": sorted(found.keys)}
    return json_response(200, payload, service.revision)


async def revoke(
    service: Service, lease: int, allowed: Callable[[str], bool] | None = None, by: Principal | None = None
) -> Response:
    """DELETE /v1/leases/{id}: the lease and its keys, by ``by``, whose keys must each pass ``allowed``."""
    try:
        event, deleted = await service.revoke(lease, allowed, by)
    except LogError as exc:
        return refusal(exc, "not revoked")
    except TucoError as exc:
        return error_answer(exc)
    payload = {"id": lease, "revision": event.sequence, "deleted_keys": deleted}
    return json_response(200, payload, event.sequence)


def lease_answer(status: int) -> Done:
    def answer(event: Event) -> Response:
        payload = {"id": event.lease, "ttl": event.ttl / 1000, "expires_at": event.deadline, "revision": event.sequence}
        return json_response(status, payload, event.sequence)

    return answer
