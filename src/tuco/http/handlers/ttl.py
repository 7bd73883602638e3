"""``POST /v1/keys/{key}/ttl?ttl=30s`` (touch) and ``DELETE`` (persist): a key's deadline, not its value.

Both rewrite the key's current value with the new deadline (or none) on the condition
that the key is still at the revision read, so a write that lands in between is never
undone; a few such races in a row answer 412. The value never travels, and the key's
revision moves like any write's (it leaves a lease it was on: the deadline is its own now).
"""

from __future__ import annotations

from tuco.core.events import Event, Precondition
from tuco.core.origin import Origin
from tuco.errors import InvalidParameterError, LogError, NoSuchKeyError, PreconditionFailedError, TucoError
from tuco.http.answers import error_answer, refusal
from tuco.http.audit import origin
from tuco.http.handlers._base import Context
from tuco.http.messages import Answer, Request, Response
from tuco.http.params import decode_key, parse_ttl

__all__ = ["deadline"]

_RACES = 5


def deadline(ctx: Context, request: Request, segment: bytes) -> Answer:
    """POST: the key expires ``?ttl=`` from now; DELETE: it no longer expires. 200 with its ETag and deadline."""
    try:
        key = decode_key(segment)
        ttl_ms = 0
        if request.method == b"POST":
            raw = request.param(b"ttl")
            if raw is None:
                raise InvalidParameterError("touch needs ?ttl= (30s, 500ms, 5m, 1h, 2d; a bare number is seconds)")
            ttl_ms = parse_ttl(raw, ctx.service.limits.max_ttl_ms)
    except TucoError as exc:
        return error_answer(exc)
    return _rewrite(ctx, key, ttl_ms, origin(request))


async def _rewrite(ctx: Context, key: str, ttl_ms: int, by: Origin) -> Response:
    service = ctx.service
    try:
        for _ in range(_RACES):
            found = await service.read_consistent(key)
            if found.entry is None:
                return error_answer(NoSuchKeyError(key))
            condition = Precondition(found.entry.mod_revision)
            try:
                if ttl_ms:
                    event: Event = await service.put_expiring(
                        key, found.entry.value, condition, ttl_ms=ttl_ms, origin=by
                    )
                else:
                    event = await service.put(key, found.entry.value, condition, by)
            except PreconditionFailedError as exc:
                if exc.current == 0:
                    return error_answer(NoSuchKeyError(key))
                continue
            deadline = ((b"X-Tuco-Expires-At", b"%d" % (event.deadline or 0)),)
            return Response(200, b"", None, (), event.sequence, event.sequence, fields=deadline)
        return error_answer(PreconditionFailedError(key, service.mod_revision(key)))
    except LogError as exc:
        return refusal(exc, "the deadline is unchanged")
    except TucoError as exc:
        return error_answer(exc)
