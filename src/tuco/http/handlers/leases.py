"""``GET /v1/leases``: the caller's own live leases (an admin's: every one), a page at a time.

A page is at most ``limit`` leases in id order, after the lease id ``after``;
``next_after`` names the id to pass for the next page (null on the last). It
calls only :class:`~tuco.service.Service` methods.
"""

from __future__ import annotations

from tuco.http.answers import json_response
from tuco.http.messages import Request, Response
from tuco.http.params import bounded
from tuco.service import Service

__all__ = ["DEFAULT_LEASE_LIMIT", "MAX_LEASE_LIMIT", "list_leases"]

DEFAULT_LEASE_LIMIT = 100
MAX_LEASE_LIMIT = 1000
_MAX_LEASE_ID = (1 << 63) - 1


def list_leases(service: Service, request: Request) -> Response:
    """One page of the leases ``request.principal`` may see: id, ttl, expires_at, remaining (s) and key_count."""
    limit = bounded(request.param(b"limit"), "limit", DEFAULT_LEASE_LIMIT, 1, MAX_LEASE_LIMIT)
    after = bounded(request.param(b"after"), "after", 0, 0, _MAX_LEASE_ID)
    now = service.now_ms()
    leases = [lease for lease in service.leases_of(request.principal) if lease.id > after]
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
    return json_response(
        200, {"leases": shown, "next_after": next_after}, b"X-Tuco-Revision: %d\r\n" % service.revision
    )
