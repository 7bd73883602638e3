"""The key routes' slower cases: reads of every kind, consistent reads, long polls, PUT with ``?ttl=`` or ``?lease=``.

The plain GET, PUT and DELETE of ``/v1/key/{key}`` are answered inline by the dispatch in
:mod:`tuco.http.api` (nearly every request: a call less per request is measurable); they come
here for everything else.
"""

from __future__ import annotations

from typing import Final

from tuco.core.events import Event, Precondition
from tuco.core.store import ExpiringEntry
from tuco.errors import (
    HistoryCompactedError,
    InvalidParameterError,
    InvalidRequestError,
    LogError,
    NoSuchKeyError,
    RevisionAheadError,
)
from tuco.http.answers import JSON, NO_SUCH_KEY, OCTET_STREAM, error_answer, refusal
from tuco.http.audit import origin
from tuco.http.handlers._base import Context, settled
from tuco.http.handlers._writes import answer_when_written
from tuco.http.handlers.watch import compacted, revision_ahead
from tuco.http.messages import Answer, Headers, Request, Response
from tuco.http.params import lease_id, parse_ttl, revision_param, wait_timeout
from tuco.service import Phase, Service

__all__ = [
    "consistent_get",
    "expiring_read",
    "long_poll",
    "put_with_parameters",
    "read_at",
    "read_now",
    "read_through",
]

_NO_SUCH_KEY_BODY: Final = NO_SUCH_KEY.body
_MISSING: Final = NoSuchKeyError.status
_CONSISTENT_READ_FAILED = "cannot reach the log for a consistent read; see the server's log"
_READ_FAILED = "cannot reach the database to read the key; see the server's log"
_CHANGED: Final[Headers] = ((b"X-Tuco-Wait", b"changed"),)
_TIMED_OUT: Final[Headers] = ((b"X-Tuco-Wait", b"timeout"),)


def read_now(service: Service, key: str, fields: Headers = ()) -> Response:
    """A read of ``key`` with every case: absent (404), with a deadline, or plain; ``fields`` sent too."""
    entry = service.read(key)  # no exception for a miss: 404s are as common as hits for some clients
    if entry is None:
        return Response(_MISSING, _NO_SUCH_KEY_BODY, JSON, (), None, service.revision, fields=fields)
    if isinstance(entry, ExpiringEntry):
        return expiring_read(entry, service.revision, fields)
    return Response(200, entry[0], OCTET_STREAM, (), entry[2], service.revision, entry[1], entry[3], fields)


async def read_through(service: Service, key: str, fields: Headers = (), consistent: bool = False) -> Response:
    """:func:`read_now` for a read-through service: a miss (or a consistent read) asks the database."""
    try:
        found = await (service.read_consistent(key) if consistent else service.fetch(key))
    except LogError as exc:
        if consistent:
            return refusal(exc, "no consistent read", _CONSISTENT_READ_FAILED)
        return refusal(exc, "no read", _READ_FAILED)
    entry = found.entry
    if entry is None:
        return Response(_MISSING, _NO_SUCH_KEY_BODY, JSON, (), None, found.revision, fields=fields)
    if found.expires_at:
        return expiring_read(ExpiringEntry(entry, found.expires_at), found.revision, fields)
    return Response(200, entry[0], OCTET_STREAM, (), entry[2], found.revision, entry[1], entry[3], fields)


def expiring_read(found: ExpiringEntry, revision: int, fields: Headers = ()) -> Response:
    """The GET answer for a live key with a deadline: as for any key, plus ``X-Tuco-Expires-At`` (Unix ms)."""
    entry = found.entry
    deadline = ((b"X-Tuco-Expires-At", b"%d" % found.expires_at),)
    return Response(200, entry[0], OCTET_STREAM, (), entry[2], revision, entry[1], entry[3], deadline + fields)


def read_at(ctx: Context, request: Request, key: str) -> Answer:
    """GET /v1/key/{k}?revision=N: the key as it was at revision N, while the history retains it (else 410).

    Carries ``X-Tuco-Create-Revision`` and ``X-Tuco-Version``; ``X-Tuco-Revision`` is N. A read-through
    replica keeps no history of values: 400 there.
    """
    service = ctx.service
    try:
        revision = revision_param(request, b"revision")
        if service.reads_through:
            raise InvalidParameterError("reads at a revision need the whole state in memory (not TUCO_STATE=cache)")
    except InvalidRequestError as exc:
        return error_answer(exc)
    if revision > service.revision:
        return _read_at_after_catch_up(ctx, key, revision)
    return _answer_at(service, key, revision)


async def _read_at_after_catch_up(ctx: Context, key: str, revision: int) -> Response:
    try:
        await ctx.service.catch_up()
    except LogError as exc:
        return refusal(exc, "no read", "cannot reach the log to tell whether that revision exists")
    if revision > ctx.service.revision:
        return revision_ahead(RevisionAheadError(revision, ctx.service.revision, read=True))
    return _answer_at(ctx.service, key, revision)


def _answer_at(service: Service, key: str, revision: int) -> Response:
    try:
        entry = service.read_at(key, revision)
    except HistoryCompactedError as exc:
        return compacted(exc)
    if entry is None:
        return Response(_MISSING, _NO_SUCH_KEY_BODY, JSON, (), None, revision)
    return Response(200, entry[0], OCTET_STREAM, (), entry[2], revision, entry[1], entry[3])


async def consistent_get(ctx: Context, key: str) -> Response:
    """GET /v1/key/{k}?consistent=true: the key once this replica applied everything the log committed."""
    service = ctx.service
    if service.reads_through:  # the database's row is the newest there is: no catching up first
        return await read_through(service, key, (), consistent=True)
    try:
        await service.catch_up()
    except LogError as exc:
        return refusal(exc, "no consistent read", _CONSISTENT_READ_FAILED)
    return read_now(service, key)


def long_poll(ctx: Context, request: Request, key: str) -> Answer:
    """GET /v1/key/{k}?wait_revision=N&timeout=T: the key once it changed at N or later, or at the timeout."""
    try:
        revision = revision_param(request, b"wait_revision")
        timeout = wait_timeout(request.param(b"timeout"))
    except InvalidRequestError as exc:
        return error_answer(exc)
    service = ctx.service
    if service.phase is not Phase.STOPPING and revision - 1 > service.revision:
        return _answer_after_wait(ctx, key, revision, timeout, catch_up=True)
    if service.phase is Phase.STOPPING or service.mod_revision(key) >= revision:
        return ctx.read(key, _CHANGED)
    return _answer_after_wait(ctx, key, revision, timeout)


async def _answer_after_wait(
    ctx: Context, key: str, revision: int, timeout: float, *, catch_up: bool = False
) -> Response:
    service = ctx.service
    if catch_up:  # a wait_revision past the store: apply what the log has first; still ahead, 409
        try:
            await service.catch_up()
        except LogError as exc:
            return refusal(exc, "no wait", "cannot reach the log to tell whether that revision exists")
        if service.mod_revision(key) >= revision:
            return await settled(ctx.read(key, _CHANGED))
    try:
        await service.wait_for_change(key, revision, timeout)
    except RevisionAheadError as exc:
        return revision_ahead(exc)
    changed = service.changed_since(key, revision) and service.phase is not Phase.STOPPING
    return await settled(ctx.read(key, _CHANGED if changed else _TIMED_OUT))


def put_with_parameters(ctx: Context, request: Request, key: str, precondition: Precondition | None) -> Answer:
    """A PUT with a query: ``?ttl=`` (30s, 500ms, 5m, 1h, 2d; a bare number is seconds) or ``?lease=ID``."""
    service = ctx.service
    writes = ctx.writes
    ttl_raw = request.param(b"ttl")
    lease_raw = request.param(b"lease")
    if ttl_raw is None and lease_raw is None:
        return answer_when_written(service.put(key, request.body, precondition, origin(request)), writes.settle_put)
    if ttl_raw is not None and lease_raw is not None:
        raise InvalidParameterError("send ttl or lease, not both: a key expires at one deadline")
    if ttl_raw is not None:
        ttl_ms = parse_ttl(ttl_raw, service.limits.max_ttl_ms)
        written = service.put_expiring(key, request.body, precondition, ttl_ms=ttl_ms, origin=origin(request))
    else:
        lease = lease_id(lease_raw or b"", InvalidParameterError("lease must be a lease id, as granted"))
        written = service.put_expiring(
            key, request.body, precondition, lease=lease, by=request.principal, origin=origin(request)
        )

    def created(event: Event) -> Response:
        expires_at = event.deadline or service.expires_at(event.key)
        deadline = ((b"X-Tuco-Expires-At", b"%d" % expires_at),)
        return Response(201, b"", None, (), event.sequence, event.sequence, fields=deadline)

    return writes.answer_lease_write(written, created, "not stored")
