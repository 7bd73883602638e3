"""The audit lines of refused requests, and what a handler asks before acting on one key of many.

The guard authorizes a request by what its route declares; a handler that acts
on several keys (a lease's revoke, a transaction's operations) asks :func:`may`
for each one, and a refusal is audited the same way either way.
"""

from __future__ import annotations

import functools
from typing import Final

import structlog

from tuco.core.origin import ANONYMOUS, Origin, Reason, clip_by, new_origin
from tuco.core.tokens import Permission, allows
from tuco.http.messages import Request

__all__ = ["ANONYMOUS_ORIGIN", "audit_denied", "may", "origin"]

ANONYMOUS_ORIGIN: Final = new_origin(ANONYMOUS, 0)
"""Who a change is recorded as with authentication off (a plain write): one object for every such write."""

_audit = structlog.get_logger("tuco.audit")


def may(request: Request, need: Permission, key: str) -> bool:
    """Whether the request's caller may ``need`` on ``key`` (or a whole prefix); a refusal is audited.

    With authentication off there is no caller and everything is allowed.
    """
    caller = request.caller
    if caller is None or allows(caller.grants, key, need):
        return True
    audit_denied(request, caller.id, "no_grant")
    return False


def origin(request: Request, reason: int = Reason.NONE) -> Origin:
    """Who a change made for ``request`` is recorded as: the token's id or the certificate's identity, else anonymous.

    Never the secret: a token is named by its id. The log sets the moment.
    """
    caller = request.caller
    if caller is None:
        return ANONYMOUS_ORIGIN if reason == Reason.NONE else _named(ANONYMOUS, reason)
    return _named(caller.cert or caller.id, reason)


@functools.lru_cache(maxsize=1024)
def _named(by: str, reason: int) -> Origin:
    """One Origin per principal and reason (bounded): a batch's writes of one principal share it."""
    return new_origin(clip_by(by), 0, reason)


def audit_denied(request: Request, token: str | None, reason: str) -> None:
    """One ``request_denied`` line: the status, why, the token id (never its secret), certificate and client."""
    _audit.warning(
        "request_denied",
        status=403 if reason == "no_grant" else 401,
        reason=reason,
        token_id=token,
        cert=request.peer.identity or None if request.peer is not None else None,
        client=request.client,
        method=request.method.decode("latin-1"),
        path=request.path[:200].decode("latin-1"),
    )
