"""How the route table declares its common shapes: a read (GET with its HEAD twin) and a key's operations.

Split from :mod:`tuco.http.routes` to keep the table itself short; the key's operations
are declared twice there (``/v1/key/{key}`` and the book's ``/v1/{key}`` alias).
"""

from __future__ import annotations

from typing import Any

from tuco import errors
from tuco.core.tokens import Permission
from tuco.http._route import Operation, Target, operation
from tuco.http._schema import (
    BINARY,
    DURATION,
    ETAG_HEADER,
    EXPIRES_HEADER,
    REVISION_HEADER,
    WAIT_HEADER,
    Fails,
    header,
    query,
)

__all__ = ["WRITTEN", "key_operations", "reads"]

_READ = Permission.READ
_WRITE = Permission.WRITE
_ADMIN = Permission.ADMIN


def reads(
    handler: str,
    target: Target,
    permission: Permission | None = _READ,
    *,
    head: str,
    needs_serving: bool = True,
    streams: bool = False,
    **doc: Any,
) -> dict[bytes, Operation]:
    """GET and HEAD, alike; ``head`` is HEAD's summary (its answers are GET's, without bodies)."""
    read = operation(handler, target, permission, needs_serving=needs_serving, streams=streams, **doc)
    return {b"GET": read, b"HEAD": read._replace(summary=head, operation_id="head" + read.operation_id[3:])}


WRITTEN = {"ETag": ETAG_HEADER, "X-Tuco-Revision": REVISION_HEADER}
"""The header fields of a write's answer."""
_CONDITIONS = (
    header("If-Match", 'Write only if the key\'s mod_revision is "N", or (*) if it exists.', '^("[1-9][0-9]*"|\\*)$'),
    header("If-None-Match", "Write only if the key does not exist.", "^\\*$"),
)


def key_operations(handler: str, suffix: str) -> dict[bytes, Operation]:
    """A key's operations, for /v1/key/{key} and its alias (``suffix`` tells their operation ids apart)."""
    read_headers = {
        "ETag": ETAG_HEADER,
        "X-Tuco-Revision": REVISION_HEADER,
        "X-Tuco-Create-Revision": {**REVISION_HEADER, "description": "The revision that created the key's life."},
        "X-Tuco-Version": {**REVISION_HEADER, "description": "Writes of the key since it was created."},
        "X-Tuco-Expires-At": EXPIRES_HEADER,
    }
    links = {
        f"{verb}Written": {"operationId": f"{verb.lower()}Key{suffix}", "parameters": {"key": "$request.path.key"}}
        for verb in ("Get", "Head", "Delete")
    }
    return {
        **reads(
            handler,
            Target.KEY,
            head="A key's headers, without the body",
            summary="Read a key: its exact bytes",
            operation_id="getKey" + suffix,
            parameters=(
                query("consistent", "PostgreSQL: catch up with every acknowledged write first.", {"type": "boolean"}),
                query(
                    "revision",
                    "The key as it was at this revision (410 once the history no longer holds it).",
                    {"type": "integer", "minimum": 1},
                ),
                query(
                    "wait_revision",
                    "Long poll: answer once the key changed at this revision or later.",
                    {"type": "integer", "minimum": 1},
                ),
                query(
                    "timeout",
                    "Long poll: at most this long (default 30s, at most 300s).",
                    {"type": "string", "pattern": DURATION},
                ),
            ),
            answers={
                "200": {
                    "description": "The value",
                    "headers": {**read_headers, "X-Tuco-Wait": WAIT_HEADER},
                    "content": BINARY,
                }
            },
            errors=(
                errors.InvalidKeyError,
                Fails(errors.InvalidParameterError, "{code} (wait_revision, timeout)"),
                Fails(errors.NoSuchKeyError, "{code} (absent or expired)", {"X-Tuco-Wait": WAIT_HEADER}),
                Fails(errors.NotFoundError, "or {code}"),
                Fails(errors.RevisionAheadError, "{code}: wait_revision - 1 or revision past the store's revision"),
                Fails(errors.HistoryCompactedError, "{code}: ?revision= older than the retained history"),
            ),
        ),
        b"PUT": operation(
            handler,
            Target.KEY,
            _WRITE,
            summary="Write a key once it is durable",
            operation_id="putKey" + suffix,
            parameters=(
                query("ttl", "Delete the key this long after the write.", {"type": "string", "pattern": DURATION}),
                query("lease", "Attach the key to this lease.", {"type": "integer", "minimum": 1}),
                *_CONDITIONS,
            ),
            body={"required": False, "content": BINARY},
            answers={
                "201": {
                    "description": "Stored",
                    "headers": {**WRITTEN, "X-Tuco-Expires-At": EXPIRES_HEADER},
                    "links": links,
                }
            },
            errors=(
                errors.InvalidKeyError,
                errors.InvalidPreconditionError,
                Fails(errors.InvalidParameterError, "{code} (ttl, lease)"),
                Fails(errors.LeaseNotFoundError, "{code} (PUT ?lease=)"),
                Fails(errors.NotFoundError, "or {code}"),
                Fails(
                    errors.PreconditionFailedError, "{code}: nothing written; ETag is the key's current one", WRITTEN
                ),
                errors.KeyTooLongError,
                errors.UriTooLongError,
                errors.LeaseLimitError,
                Fails(
                    errors.StoreFullError,
                    "{code}: the store is at TUCO_MAX_STORE_BYTES or TUCO_MAX_STORE_KEYS; nothing written",
                ),
            ),
        ),
        b"DELETE": operation(
            handler,
            Target.KEY,
            _WRITE,
            summary="Delete a key (idempotent)",
            operation_id="deleteKey" + suffix,
            parameters=_CONDITIONS,
            answers={"200": {"description": "Deleted, or was absent", "headers": {"X-Tuco-Revision": REVISION_HEADER}}},
            errors=(
                errors.InvalidKeyError,
                errors.InvalidPreconditionError,
                errors.NotFoundError,
                Fails(errors.PreconditionFailedError, headers=WRITTEN),
            ),
        ),
    }
