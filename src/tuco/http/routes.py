"""The declared routes of the API and how a path finds one.

``/v1/key/{key}`` first, whose key is the rest of the path (``/v1/key/app/config``
is the key ``app/config``, as ``/v1/key/app%2Fconfig`` is); then fixed paths, by
one dict lookup; then the reserved names under ``/v1/`` (resources, never keys);
last the book's ``/v1/{key}`` alias, which serves every other single segment. A
key whose name is reserved stays reachable at ``/v1/key/{name}``. Any route's
``{key}`` parameter takes every segment it spans, so a new route under a key
(``/v1/history/{key}``) needs no matching of its own.

Each operation also declares what the OpenAPI document says of it (its summary
and id, parameters, body, answers, and the error classes it answers), built with
:mod:`tuco.http._schema`; :mod:`tuco.http.openapi` renders the document from
this table alone. Adding an endpoint here documents it.
"""

from __future__ import annotations

from typing import Final

from tuco.core.tokens import Permission
from tuco.errors import (
    ForbiddenError,
    HistoryCompactedError,
    InvalidKeyError,
    InvalidPageTokenError,
    InvalidParameterError,
    InvalidTxnError,
    KeyTooLongError,
    LeaseLimitError,
    LeaseNotFoundError,
    NoSuchKeyError,
    NotFoundError,
    PreconditionFailedError,
    RevisionAheadError,
    SnapshotError,
    StoreFullError,
    TokenLimitError,
    TokenNotFoundError,
    TxnBytesLimitError,
    TxnOpsLimitError,
)
from tuco.http._console import CONSOLE
from tuco.http._declare import WRITTEN, key_operations, reads
from tuco.http._route import Operation, Route, Target, operation, route
from tuco.http._schema import (
    DURATION,
    EXPIRES_HEADER,
    HISTORY_PAGE,
    KEY_PARAM,
    LEASE_PARAM,
    REVISION_HEADER,
    TOKEN_PARAM,
    Fails,
    Schema,
    header,
    json_answer,
    query,
    ref,
)
from tuco.http.messages import KEY_ROUTE

__all__ = [
    "ALIAS",
    "CONSOLE",
    "KEEPALIVE",
    "KEY",
    "LEASE",
    "RESERVED",
    "ROUTES",
    "TOKEN",
    "Operation",
    "Route",
    "Target",
    "match",
]

_TEXT: Schema = {"type": "string"}


def _json_body(name: str) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


_READ = Permission.READ
_WRITE = Permission.WRITE
_ADMIN = Permission.ADMIN


_LEASE_ERRORS = (InvalidParameterError, LeaseNotFoundError)


def _lease_write(handler: str, summary: str, operation_id: str, answer: tuple[str, str]) -> Operation:
    """A write to one lease of the caller's; ``answer`` is its 200's description and schema name."""
    described, schema = answer
    return operation(
        handler,
        Target.LEASE,
        _WRITE,
        summary=summary,
        operation_id=operation_id,
        answers={"200": json_answer(described, ref(schema))},
        errors=_LEASE_ERRORS,
    )


KEY: Final = route(KEY_ROUTE, key_operations("keys.key", ""), (KEY_PARAM,))
LEASE = route(
    "/v1/leases/{id}",
    {
        **reads(
            "leases.lease",
            Target.LEASE,
            head="A lease's headers",
            summary="A lease and its keys",
            operation_id="getLease",
            answers={"200": json_answer("The lease", ref("LeaseKeys"))},
            errors=_LEASE_ERRORS,
        ),
        b"DELETE": _lease_write(
            "leases.lease", "Revoke a lease, deleting its keys", "deleteLease", ("Revoked", "Revoked")
        ),
    },
    (LEASE_PARAM,),
)
KEEPALIVE = route(
    "/v1/leases/{id}/keepalive",
    {b"POST": _lease_write("leases.keepalive", "The lease ends ttl from now", "postKeepalive", ("The lease", "Lease"))},
    (LEASE_PARAM,),
)
TOKEN = route(
    "/v1/tokens/{id}",
    {
        **reads(
            "tokens.token",
            Target.ALL,
            _ADMIN,
            head="A token's headers",
            summary="One token, without its secret",
            operation_id="getToken",
            answers={"200": json_answer("The token", ref("Token"))},
            errors=(TokenNotFoundError,),
        ),
        b"DELETE": operation(
            "tokens.token",
            Target.ALL,
            _ADMIN,
            summary="Revoke a token on every replica",
            operation_id="deleteToken",
            answers={"204": {"description": "Revoked"}},
            errors=(TokenNotFoundError,),
        ),
    },
    (TOKEN_PARAM,),
)
_REVISION = {"X-Tuco-Revision": REVISION_HEADER}
_TOUCHED = {**WRITTEN, "X-Tuco-Expires-At": EXPIRES_HEADER}
_TTL_ERRORS = (
    InvalidKeyError,
    Fails(InvalidParameterError, "{code} (ttl)"),
    Fails(NoSuchKeyError, "{code} (absent or expired)"),
    Fails(PreconditionFailedError, "{code}: the key kept changing under the rewrite; nothing written", WRITTEN),
    LeaseLimitError,
)


def _history_operation(target: Target, operation_id: str, key: tuple[Schema, ...]) -> Operation:
    """``GET /v1/history/{key}`` (or ``?key=``): who changed the key, when and how."""
    return operation(
        "history.history",
        target,
        _READ,
        summary="Who changed the key, when and how: its retained changes, newest first",
        operation_id=operation_id,
        parameters=(
            *key,
            query("limit", "Changes per page.", {"type": "integer", "minimum": 1, "maximum": 1000}),
            query(
                "before", "Only changes below this revision (a page's next_before).", {"type": "integer", "minimum": 1}
            ),
        ),
        answers={
            "200": json_answer(
                "A page of changes: revision, type, a put's value (base64), by, at, a delete's reason",
                HISTORY_PAGE,
                _REVISION,
            )
        },
        errors=(
            Fails(InvalidParameterError, "{code} (key, limit, before)"),
            Fails(HistoryCompactedError, "{code}: the history no longer reaches below before"),
        ),
    )


_DECLARED: tuple[Route, ...] = (
    route(
        "/healthz",
        reads(
            "status.health",
            Target.PUBLIC,
            None,
            needs_serving=False,
            head="Liveness, without the body",
            summary="The process runs",
            operation_id="getHealth",
            answers={"200": json_answer("Alive", ref("Health"))},
        ),
    ),
    route(
        "/readyz",
        reads(  # details: read on every key
            "status.readiness",
            Target.PUBLIC,
            needs_serving=False,
            head="Readiness, without the body",
            summary="Replay is done and the log takes writes",
            operation_id="getReadiness",
            answers={
                "200": json_answer("Ready", ref("Readiness")),
                "503": json_answer("Not ready, or a failed log", ref("Readiness")),
            },
        ),
    ),
    route(
        "/metrics",
        reads(
            "status.metrics",
            Target.METRICS,
            Permission.METRICS,
            needs_serving=False,
            head="Metrics, without the body",
            summary="Prometheus metrics",
            operation_id="getMetrics",
            answers={"200": {"description": "The text exposition", "content": {"text/plain": {"schema": _TEXT}}}},
            errors=(Fails(NotFoundError, "{code}: metrics are off"),),
        ),
    ),
    route(
        "/v1/keys",
        {
            **reads(
                "listing.list_keys",
                Target.PREFIX,
                head="A listing page's headers",
                summary="One page of the keys under a prefix",
                operation_id="getKeys",
                parameters=(
                    query("prefix", "Only keys that start with it (default: all).", {"type": "string"}),
                    query("limit", "Keys per page.", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    query("page_token", "The previous page's next_page_token.", {"type": "string"}),
                    query("keys_only", "Leave the values out.", {"type": "boolean"}),
                    query(
                        "revision",
                        "List the keys as they were at this revision (410 once not retained).",
                        {"type": "integer", "minimum": 1},
                    ),
                ),
                answers={"200": json_answer("A page", ref("Page"), _REVISION)},
                errors=(
                    Fails(InvalidParameterError, "{code} (limit, keys_only, prefix)"),
                    InvalidPageTokenError,
                    Fails(HistoryCompactedError, "{code}: the listing's revision is no longer retained"),
                ),
            ),
            b"DELETE": operation(
                "txn.delete_prefix",
                Target.PREFIX,
                _WRITE,
                summary="Delete every key under a prefix, at one revision",
                operation_id="deleteKeys",
                parameters=(
                    query("prefix", "The keys that start with it.", {"type": "string"}),
                    query("all", "With an empty prefix: delete every key.", {"type": "boolean"}),
                ),
                answers={"200": json_answer("Deleted", ref("RangeDeleted"), _REVISION)},
                errors=(
                    Fails(InvalidParameterError, "{code}: an empty prefix without all=true"),
                    Fails(ForbiddenError, "{code}: no write grant on the whole prefix"),
                ),
            ),
        },
    ),
    route(
        "/v1/txn",
        {
            b"POST": operation(
                "txn.txn",
                Target.SOME,
                _READ,
                summary="A transaction: compares, then the success or the failure operations, all at one revision",
                operation_id="postTxn",
                body=_json_body("TxnRequest"),
                answers={"200": json_answer("Decided and done", ref("TxnAnswer"), _REVISION)},
                errors=(
                    Fails(InvalidTxnError, "{code}: a body that is not a transaction, or a key written twice"),
                    Fails(ForbiddenError, "{code}: no grant for one of its compares or operations; nothing done"),
                    Fails(LeaseNotFoundError, "{code}: a put's lease does not exist; nothing written"),
                    InvalidKeyError,
                    KeyTooLongError,
                    Fails(InvalidParameterError, "{code} (a put's ttl)"),
                    TxnOpsLimitError,
                    TxnBytesLimitError,
                    Fails(StoreFullError, "{code}: the store would pass its bound; nothing written"),
                ),
            ),
        },
    ),
    route(
        "/v1/watch",
        reads(
            "watch.watch",
            Target.PREFIX,
            streams=True,
            head="A watch's headers, or its 400/409/410; opens no watch",
            summary="Stream the changes under a prefix, or to one key (Server-Sent Events)",
            operation_id="getWatch",
            parameters=(
                query("prefix", "Changes to keys under it.", {"type": "string"}),
                query("key", "Changes to exactly this key (not with prefix).", {"type": "string", "minLength": 1}),
                query("start_revision", "From this revision on.", {"type": "integer", "minimum": 1}),
                header("Last-Event-ID", "Resume after this revision (wins over start_revision).", "^[0-9]+$"),
            ),
            answers={
                "200": {
                    "description": "The stream: put, delete, progress and cancel events, each id a revision; "
                    "a put's or delete's data has revision and key (a put: value in base64, create_revision, "
                    "version) and, where the log recorded them, by (token id, certificate identity, expirer, "
                    "lease-revoke or anonymous), at (Unix ms) and a delete's reason (deleted, expired, "
                    "lease_revoked, range_delete)",
                    "content": {"text/event-stream": {"schema": _TEXT}},
                }
            },
            errors=(
                InvalidParameterError,
                Fails(
                    RevisionAheadError,
                    "{code}: the resume point is past the store's revision (re-sync, watch from now)",
                ),
                HistoryCompactedError,
            ),
        ),
    ),
    route(
        "/v1/leases",
        {
            **reads(
                "leases.leases",
                Target.SOME,
                head="A lease listing's headers",
                summary="The caller's own live leases (an admin's: every one), a page at a time",
                operation_id="getLeases",
                parameters=(
                    query("limit", "Leases per page.", {"type": "integer", "minimum": 1, "maximum": 1000}),
                    query("after", "The previous page's next_after.", {"type": "integer", "minimum": 0}),
                ),
                answers={"200": json_answer("A page of leases", ref("Leases"), _REVISION)},
                errors=(Fails(InvalidParameterError, "{code} (limit, after)"),),
            ),
            b"POST": operation(
                "leases.leases",
                Target.SOME,
                _WRITE,
                summary="Grant a lease",
                operation_id="postLease",
                body=_json_body("LeaseRequest"),
                answers={"201": json_answer("The lease", ref("Lease"))},
                errors=(InvalidParameterError, LeaseLimitError),
            ),
        },
    ),
    route(
        "/v1/tokens",
        {
            **reads(
                "tokens.tokens",
                Target.ALL,
                _ADMIN,
                head="The tokens' headers",
                summary="Every live token, without secrets (admin on every key)",
                operation_id="getTokens",
                answers={"200": json_answer("The tokens", ref("Tokens"), _REVISION)},
            ),
            b"POST": operation(
                "tokens.tokens",
                Target.ALL,
                _ADMIN,
                summary="Create a token (admin on every key); its secret is in this answer only",
                operation_id="postToken",
                body=_json_body("TokenRequest"),
                answers={
                    "201": {
                        **json_answer("The token, with its secret", ref("CreatedToken"), _REVISION),
                        "links": {
                            f"{name}Created": {"operationId": name, "parameters": {"id": "$response.body#/id"}}
                            for name in ("getToken", "deleteToken")
                        },
                    }
                },
                errors=(Fails(InvalidParameterError, "{code}: a body that is not a token request"), TokenLimitError),
            ),
        },
    ),
    route(
        "/v1/snapshot",
        reads(
            "snapshot.snapshot",
            Target.ALL,
            _ADMIN,
            head="Whether a snapshot can be taken now, and at which revision",
            summary="A consistent snapshot of the whole state at one revision, streamed (admin on every key)",
            operation_id="getSnapshot",
            answers={
                "200": {
                    "description": "The snapshot (format in docs/operations/backup.md); X-Tuco-Revision is its "
                    "revision. A stream that ends without the format's trailer was abandoned: take it again",
                    "headers": _REVISION,
                    "content": {"application/vnd.tuco.snapshot": {"schema": {"type": "string", "format": "binary"}}},
                }
            },
            errors=(
                Fails(
                    SnapshotError,
                    "{code}: two snapshots are running already; try again when one ends",
                ),
            ),
        ),
    ),
    route(
        "/v1/openapi.json",
        reads(
            "status.openapi",
            Target.AUTHENTICATED,
            None,
            needs_serving=False,
            head="This document's headers",
            summary="This document",
            operation_id="getOpenapi",
            answers={"200": json_answer("OpenAPI 3.1", {"type": "object"})},
        ),
    ),
    route(
        "/v1/keys/{key}/ttl",
        {
            b"POST": operation(
                "ttl.deadline",
                Target.KEY,
                _WRITE,
                summary="Touch: the key expires ttl from now (its value is kept, not resent)",
                operation_id="postKeyTtl",
                parameters=(
                    {
                        **query("ttl", "The new time to live.", {"type": "string", "pattern": DURATION}),
                        "required": True,
                    },
                ),
                answers={"200": {"description": "The new deadline", "headers": _TOUCHED}},
                errors=_TTL_ERRORS,
            ),
            b"DELETE": operation(
                "ttl.deadline",
                Target.KEY,
                _WRITE,
                summary="Persist: the key no longer expires (its value is kept)",
                operation_id="deleteKeyTtl",
                answers={"200": {"description": "No deadline now (X-Tuco-Expires-At: 0)", "headers": _TOUCHED}},
                errors=_TTL_ERRORS,
            ),
        },
        (KEY_PARAM,),
    ),
    route("/v1/history/{key}", {b"GET": _history_operation(Target.KEY, "getKeyHistory", ())}, (KEY_PARAM,)),
    route(
        "/v1/history",
        {
            b"GET": _history_operation(
                Target.PREFIX,
                "getHistory",
                ({**query("key", "The key.", {"type": "string", "minLength": 1}), "required": True},),
            )
        },
    ),
    *CONSOLE,
    KEY,
    LEASE,
    KEEPALIVE,
    TOKEN,
)
"""Every route but the alias. A new endpoint is one more entry here (before the key routes, for the document)."""

RESERVED: tuple[str, ...] = tuple(
    dict.fromkeys(
        route.pattern[4:].partition("/")[0]
        for route in _DECLARED
        if route.pattern.startswith("/v1/") and route is not KEY
    )
)
"""Names under /v1/ that are resources, not keys: the first segment of every /v1/ route but the key's."""

_ALIAS_PARAM: Schema = {
    **KEY_PARAM,
    "description": "As for /v1/key/{key}, but one path segment only (a / in the key is sent as %2F) and not one "
    "of the reserved names (those are resources).",
    "schema": {"type": "string", "minLength": 1, "not": {"enum": list(RESERVED)}},
}
ALIAS: Final = route("/v1/{key}", key_operations("keys.key", "Alias"), (_ALIAS_PARAM,))

ROUTES: Final[tuple[Route, ...]] = (*_DECLARED, ALIAS)
"""Every route, in matching order (the alias last): the one table the front ends, the guard and the document read."""

_FIXED: dict[bytes, Route] = {route.pattern.encode(): route for route in ROUTES if "{" not in route.pattern}


def _parted(route: Route) -> tuple[bytes, bytes, bool, Route]:
    """A pattern with one parameter as what comes before it and after it (``/v1/leases/{id}/keepalive``), and
    whether the parameter is a key: a ``{key}`` takes every segment between (``/v1/keys/a/b/ttl`` is ``a/b``)."""
    before, _, rest = route.pattern.partition("{")
    name, _, after = rest.partition("}")
    return before.encode(), after.encode(), name == "key", route


_NESTED: tuple[tuple[bytes, bytes, bool, Route], ...] = tuple(
    _parted(route) for route in ROUTES if "{" in route.pattern and route is not KEY and route is not ALIAS
)


def match(path: bytes) -> tuple[Route | None, bytes]:
    """The route for ``path`` and its parameter's raw segment (a key, an id); ``(None, b"")`` for no route.

    The key route first (nearly every request: the rest of the path is the key, slashes and all, as in
    Consul's ``/v1/kv/``), then the fixed paths, then the alias for any other single segment under /v1/,
    then the routes with a parameter inside the path (never empty; one segment unless it is a ``{key}``).
    """
    if path.startswith(b"/v1/key/"):
        return KEY, path[8:]
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed, b""
    if path.startswith(b"/v1/") and path.find(b"/", 4) < 0:  # not ``in``: see tuco.http.api
        return ALIAS, path[4:]
    for before, after, key, nested in _NESTED:
        if path.startswith(before) and path.endswith(after) and len(path) > len(before) + len(after):
            segment = path[len(before) : len(path) - len(after)]
            if key or segment.find(b"/") < 0:
                return nested, segment
    return None, b""
