"""The OpenAPI 3.1 description of the HTTP API, built once from tables kept beside the routes.

Each route of :mod:`tuco.http.routes` has its operations here (a test keeps the two
in step), and every operation lists every status it can answer: its own, and those
any request can get from the HTTP layer (framing, limits, start-up and shutdown).
The document is served at ``/v1/openapi.json`` and kept in the repository as
``openapi.json`` (``python -m tuco.http.openapi > openapi.json``; a test compares).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import tuco
from tuco.http.routes import RESERVED

__all__ = ["document", "document_bytes"]

Schema = dict[str, Any]

_ERROR: Schema = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable machine-readable code (see the README's error table)."},
        "message": {"type": "string", "description": "tuco's fixed words for the code; never a traceback."},
        "oldest_revision": {"type": "integer", "description": "With history_compacted: the oldest servable revision."},
        "revision": {"type": "integer", "description": "With revision_ahead: the store's revision."},
        "requested": {"type": "integer", "description": "With revision_ahead: the revision the request resumes after."},
    },
}
_REVISION_HEADER = {
    "description": "The store's revision of a read; the revision a write created.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_ETAG_HEADER = {
    "description": 'The key\'s mod_revision as a strong tag: "N".',
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}
_EXPIRES_HEADER = {
    "description": "Unix milliseconds at which the key is deleted.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_WAIT_HEADER = {"description": "A long poll's outcome.", "schema": {"type": "string", "enum": ["changed", "timeout"]}}


def _error(description: str, headers: dict[str, Schema] | None = None) -> Schema:
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = headers
    return response


# What any request may get before or besides its operation (README, "Errors"), as shared responses.
_COMMON: dict[str, Schema] = {
    "BadRequest": _error("bad_request (malformed framing), or the operation's own invalid_* codes"),
    "RequestTimeout": _error("request_timeout: the request was not received in time"),
    "TooLarge": _error("value_too_large: a body over the limit, refused before it is read"),
    "UriTooLong": _error("uri_too_long: a request target over 16 KiB (key_too_long on a PUT)"),
    "MethodNotAllowed": _error(
        "method_not_allowed: the path does not answer that method",
        {"Allow": {"description": "The methods the path answers.", "schema": {"type": "string"}}},
    ),
    "Unauthorized": _error(
        "unauthorized (TUCO_AUTH=token): no credential, or a malformed, unknown, revoked or expired one",
        {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    ),
    "Forbidden": _error("forbidden (TUCO_AUTH=token): the credential holds no grant for this"),
    "ExpectationFailed": _error("expectation_failed: an Expect other than 100-continue"),
    "HeadersTooLarge": _error("headers_too_large"),
    "NotImplemented": _error("not_implemented: a transfer coding other than chunked"),
    "Unavailable": _error(
        "starting, shutting_down, too_many_connections, server_busy; log_failed, log_unavailable, log_closed",
        {"Retry-After": {"description": "Seconds to wait, when over a cap.", "schema": {"type": "string"}}},
    ),
}
_ANY: dict[str, Schema] = {
    status: {"$ref": f"#/components/responses/{name}"}
    for status, name in (
        ("400", "BadRequest"),
        ("408", "RequestTimeout"),
        ("413", "TooLarge"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("405", "MethodNotAllowed"),
        ("414", "UriTooLong"),
        ("417", "ExpectationFailed"),
        ("431", "HeadersTooLarge"),
        ("501", "NotImplemented"),
        ("503", "Unavailable"),
    )
}

_KEY_PARAM: Schema = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "One percent-decoded path segment: any non-empty UTF-8 (write / as %2F).",
    "schema": {"type": "string", "minLength": 1},
}
_ALIAS_PARAM: Schema = {
    **_KEY_PARAM,
    "description": "As for /v1/key/{key}, but not one of the reserved names (those are resources).",
    "schema": {"type": "string", "minLength": 1, "not": {"enum": list(RESERVED)}},
}
_TOKEN_PARAM: Schema = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A token's id (the part after tuco_ and before the secret).",
    "schema": {"type": "string", "minLength": 1},
}
_LEASE_PARAM: Schema = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A lease id: the revision of its grant.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _header(name: str, description: str, pattern: str) -> Schema:
    schema = {"type": "string", "pattern": pattern}
    return {"name": name, "in": "header", "required": False, "description": description, "schema": schema}


_DURATION = "^[0-9]+(\\.[0-9]{1,3})?(ms|s|m|h|d)?$"


def _operation(summary: str, responses: dict[str, Schema], **extra: Any) -> Schema:
    operation: Schema = {"summary": summary, **extra, "responses": {**_ANY, **responses}}
    return operation


def _head_of(operation: Schema, summary: str) -> Schema:
    """HEAD: the GET's statuses and headers, no bodies."""
    responses = {
        status: _COMMON_HEAD[response["$ref"]] if "$ref" in response else _without_body(response)
        for status, response in operation["responses"].items()
    }
    head = {key: value for key, value in operation.items() if key not in ("responses", "operationId")}
    head["summary"] = summary
    head["operationId"] = "head" + operation["operationId"][3:]
    head["responses"] = responses
    return head


def _without_body(response: Schema) -> Schema:
    return {key: value for key, value in response.items() if key != "content"}


_COMMON_HEAD = {f"#/components/responses/{name}": _without_body(response) for name, response in _COMMON.items()}


def _key_operations(parameter: Schema, suffix: str) -> Schema:
    read_headers = {"ETag": _ETAG_HEADER, "X-Tuco-Revision": _REVISION_HEADER, "X-Tuco-Expires-At": _EXPIRES_HEADER}
    get = _operation(
        "Read a key: its exact bytes",
        {
            "200": {
                "description": "The value",
                "headers": {**read_headers, "X-Tuco-Wait": _WAIT_HEADER},
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            },
            "400": _error("invalid_key, invalid_parameter (wait_revision, timeout)"),
            "404": _error("no_such_key (absent or expired), or not_found", {"X-Tuco-Wait": _WAIT_HEADER}),
            "409": _error("revision_ahead: wait_revision - 1 is past the store's revision (re-read the key)"),
        },
        operationId="getKey" + suffix,
        parameters=[
            _query("consistent", "PostgreSQL: catch up with every acknowledged write first.", {"type": "boolean"}),
            _query(
                "wait_revision",
                "Long poll: answer once the key changed at this revision or later.",
                {"type": "integer", "minimum": 1},
            ),
            _query(
                "timeout",
                "Long poll: at most this long (default 30s, at most 300s).",
                {"type": "string", "pattern": _DURATION},
            ),
        ],
    )
    written = {"ETag": _ETAG_HEADER, "X-Tuco-Revision": _REVISION_HEADER}
    conditions = [
        _header(
            "If-Match", 'Write only if the key\'s mod_revision is "N", or (*) if it exists.', '^("[1-9][0-9]*"|\\*)$'
        ),
        _header("If-None-Match", "Write only if the key does not exist.", "^\\*$"),
    ]
    put = _operation(
        "Write a key once it is durable",
        {
            "201": {
                "description": "Stored",
                "headers": {**written, "X-Tuco-Expires-At": _EXPIRES_HEADER},
                "links": {
                    f"{verb}Written": {
                        "operationId": f"{verb.lower()}Key{suffix}",
                        "parameters": {"key": "$request.path.key"},
                    }
                    for verb in ("Get", "Head", "Delete")
                },
            },
            "400": _error("invalid_key, invalid_precondition, invalid_parameter (ttl, lease)"),
            "404": _error("no_such_lease (PUT ?lease=), or not_found"),
            "412": _error("precondition_failed: nothing written; ETag is the key's current one", written),
            "414": _error("key_too_long, uri_too_long"),
            "429": _error("lease_limit"),
            "507": _error("store_full: the store is at TUCO_MAX_STORE_BYTES or TUCO_MAX_STORE_KEYS; nothing written"),
        },
        operationId="putKey" + suffix,
        parameters=[
            _query("ttl", "Delete the key this long after the write.", {"type": "string", "pattern": _DURATION}),
            _query("lease", "Attach the key to this lease.", {"type": "integer", "minimum": 1}),
            *conditions,
        ],
        requestBody={
            "required": False,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        },
    )
    delete = _operation(
        "Delete a key (idempotent)",
        {
            "200": {"description": "Deleted, or was absent", "headers": {"X-Tuco-Revision": _REVISION_HEADER}},
            "400": _error("invalid_key, invalid_precondition"),
            "404": _error("not_found"),
            "412": _error("precondition_failed", written),
        },
        operationId="deleteKey" + suffix,
        parameters=conditions,
    )
    return {
        "parameters": [parameter],
        "get": get,
        "head": _head_of(get, "A key's headers, without the body"),
        "put": put,
        "delete": delete,
    }


def _json(description: str, schema: Schema, headers: dict[str, Schema] | None = None) -> Schema:
    response: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _with_head(get: Schema, summary: str) -> Schema:
    return {"get": get, "head": _head_of(get, summary)}


def _paths() -> dict[str, Schema]:
    listing = _operation(
        "One page of the keys under a prefix",
        {
            "200": _json("A page", _ref("Page"), {"X-Tuco-Revision": _REVISION_HEADER}),
            "400": _error("invalid_parameter (limit, keys_only, prefix), invalid_page_token"),
            "410": _error("history_compacted: the listing's revision is no longer retained"),
        },
        operationId="getKeys",
        parameters=[
            _query("prefix", "Only keys that start with it (default: all).", {"type": "string"}),
            _query("limit", "Keys per page.", {"type": "integer", "minimum": 1, "maximum": 1000}),
            _query("page_token", "The previous page's next_page_token.", {"type": "string"}),
            _query("keys_only", "Leave the values out.", {"type": "boolean"}),
        ],
    )
    watch = _operation(
        "Stream the changes under a prefix, or to one key (Server-Sent Events)",
        {
            "200": {
                "description": "The stream: put, delete, progress and cancel events, each id a revision",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "400": _error("invalid_parameter"),
            "409": _error("revision_ahead: the resume point is past the store's revision (re-sync, watch from now)"),
            "410": _error("history_compacted"),
        },
        operationId="getWatch",
        parameters=[
            _query("prefix", "Changes to keys under it.", {"type": "string"}),
            _query("key", "Changes to exactly this key (not with prefix).", {"type": "string", "minLength": 1}),
            _query("start_revision", "From this revision on.", {"type": "integer", "minimum": 1}),
            _header("Last-Event-ID", "Resume after this revision (wins over start_revision).", "^[0-9]+$"),
        ],
    )
    lease_answers = {"404": _error("no_such_lease"), "400": _error("invalid_parameter")}
    return {
        "/healthz": _with_head(
            _operation("The process runs", {"200": _json("Alive", _ref("Health"))}, operationId="getHealth"),
            "Liveness, without the body",
        ),
        "/readyz": _with_head(
            _operation(
                "Replay is done and the log takes writes",
                {
                    "200": _json("Ready", _ref("Readiness")),
                    "503": _json("Not ready, or a failed log", _ref("Readiness")),
                },
                operationId="getReadiness",
            ),
            "Readiness, without the body",
        ),
        "/metrics": _with_head(
            _operation(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "The text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "404": _error("not_found: metrics are off"),
                },
                operationId="getMetrics",
            ),
            "Metrics, without the body",
        ),
        "/v1/openapi.json": _with_head(
            _operation("This document", {"200": _json("OpenAPI 3.1", {"type": "object"})}, operationId="getOpenapi"),
            "This document's headers",
        ),
        "/v1/keys": _with_head(listing, "A listing page's headers"),
        "/v1/watch": _with_head(watch, "A watch's headers, or its 400/409/410; opens no watch"),
        "/v1/leases": {
            **_with_head(
                _operation(
                    "The caller's own live leases (an admin's: every one), a page at a time",
                    {
                        "200": _json("A page of leases", _ref("Leases"), {"X-Tuco-Revision": _REVISION_HEADER}),
                        "400": _error("invalid_parameter (limit, after)"),
                    },
                    operationId="getLeases",
                    parameters=[
                        _query("limit", "Leases per page.", {"type": "integer", "minimum": 1, "maximum": 1000}),
                        _query("after", "The previous page's next_after.", {"type": "integer", "minimum": 0}),
                    ],
                ),
                "A lease listing's headers",
            ),
            "post": _operation(
                "Grant a lease",
                {
                    "201": _json("The lease", _ref("Lease")),
                    "400": _error("invalid_parameter"),
                    "429": _error("lease_limit"),
                },
                operationId="postLease",
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("LeaseRequest")}}},
            ),
        },
        "/v1/leases/{id}": {
            "parameters": [_LEASE_PARAM],
            **_with_head(
                _operation(
                    "A lease and its keys",
                    {"200": _json("The lease", _ref("LeaseKeys")), **lease_answers},
                    operationId="getLease",
                ),
                "A lease's headers",
            ),
            "delete": _operation(
                "Revoke a lease, deleting its keys",
                {"200": _json("Revoked", _ref("Revoked")), **lease_answers},
                operationId="deleteLease",
            ),
        },
        "/v1/leases/{id}/keepalive": {
            "parameters": [_LEASE_PARAM],
            "post": _operation(
                "The lease ends ttl from now",
                {"200": _json("The lease", _ref("Lease")), **lease_answers},
                operationId="postKeepalive",
            ),
        },
        "/v1/tokens": {
            **_with_head(
                _operation(
                    "Every live token, without secrets (admin on every key)",
                    {"200": _json("The tokens", _ref("Tokens"), {"X-Tuco-Revision": _REVISION_HEADER})},
                    operationId="getTokens",
                ),
                "The tokens' headers",
            ),
            "post": _operation(
                "Create a token (admin on every key); its secret is in this answer only",
                {
                    "201": {
                        **_json(
                            "The token, with its secret", _ref("CreatedToken"), {"X-Tuco-Revision": _REVISION_HEADER}
                        ),
                        "links": {
                            f"{name}Created": {"operationId": name, "parameters": {"id": "$response.body#/id"}}
                            for name in ("getToken", "deleteToken")
                        },
                    },
                    "400": _error("invalid_parameter: a body that is not a token request"),
                    "429": _error("token_limit"),
                },
                operationId="postToken",
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("TokenRequest")}}},
            ),
        },
        "/v1/tokens/{id}": {
            "parameters": [_TOKEN_PARAM],
            **_with_head(
                _operation(
                    "One token, without its secret",
                    {"200": _json("The token", _ref("Token")), "404": _error("no_such_token")},
                    operationId="getToken",
                ),
                "A token's headers",
            ),
            "delete": _operation(
                "Revoke a token on every replica",
                {"204": {"description": "Revoked"}, "404": _error("no_such_token")},
                operationId="deleteToken",
            ),
        },
        "/v1/key/{key}": _key_operations(_KEY_PARAM, ""),
        "/v1/{key}": _key_operations(_ALIAS_PARAM, "Alias"),
    }


def _components() -> Schema:
    integer = {"type": "integer"}
    item = {
        "type": "object",
        "required": ["key", "create_revision", "mod_revision", "version"],
        "properties": {
            "key": {"type": "string"},
            "value": {"type": "string", "contentEncoding": "base64"},
            "create_revision": integer,
            "mod_revision": integer,
            "version": integer,
            "expires_at": integer,
        },
    }
    lease_fields = {"id": integer, "ttl": {"type": "number"}, "expires_at": integer}
    token: Schema = {
        "type": "object",
        "required": ["id", "description", "grants", "expires_at", "cert", "revision"],
        "properties": {
            "id": {"type": "string"},
            "description": {"type": "string"},
            "grants": {"type": "array", "items": _ref("Grant")},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "cert": {"type": ["string", "null"]},
            "revision": integer,
        },
    }
    return {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A tuco token (tuco_<id>_<secret>) or the bootstrap token; needed with TUCO_AUTH=token",
            }
        },
        "responses": _COMMON,
        "schemas": {
            "Error": _ERROR,
            "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}},
            "Readiness": {
                "type": "object",
                "required": ["ready"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "phase": {"type": "string"},
                    "log": {"type": "object"},
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
            "Item": item,
            "Page": {
                "type": "object",
                "required": ["revision", "items", "next_page_token"],
                "properties": {
                    "revision": integer,
                    "items": {"type": "array", "items": _ref("Item")},
                    "next_page_token": {"type": ["string", "null"]},
                },
            },
            "LeaseRequest": {
                "type": "object",
                "required": ["ttl"],
                "properties": {
                    "ttl": {
                        "oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": _DURATION}]
                    }
                },
            },
            "Lease": {
                "type": "object",
                "required": ["id", "ttl", "expires_at", "revision"],
                "properties": {**lease_fields, "revision": integer},
            },
            "Leases": {
                "type": "object",
                "required": ["leases", "next_after"],
                "properties": {
                    "leases": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "ttl", "expires_at", "remaining", "key_count"],
                            "properties": {
                                **lease_fields,
                                "remaining": {"type": "number", "minimum": 0},
                                "key_count": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                    "next_after": {"type": ["integer", "null"]},
                },
            },
            "LeaseKeys": {
                "type": "object",
                "required": ["id", "ttl", "expires_at", "keys"],
                "properties": {**lease_fields, "keys": {"type": "array", "items": {"type": "string"}}},
            },
            "Grant": {
                "type": "object",
                "required": ["prefix", "permission"],
                "properties": {
                    "prefix": {"type": "string"},
                    "permission": {"type": "string", "enum": ["read", "write", "admin"]},
                },
            },
            "TokenRequest": {
                "type": "object",
                "required": ["grants"],
                "properties": {
                    "description": {"type": "string"},
                    "grants": {"type": "array", "minItems": 1, "maxItems": 64, "items": _ref("Grant")},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "cert": {
                        "type": "string",
                        "description": "Grant a client certificate identity instead, by kind: dns:NAME, "
                        "uri:URI, email:ADDRESS, ip:ADDRESS or cn:NAME.",
                        "pattern": "^(cn|dns|uri|email|ip):\\S(.*\\S)?$",
                        "maxLength": 256,
                    },
                },
            },
            "Token": token,
            "CreatedToken": {
                **token,
                "required": [*token["required"], "token"],
                "properties": {
                    **token["properties"],
                    "token": {"type": ["string", "null"], "description": "The secret, shown this once"},
                },
            },
            "Tokens": {
                "type": "object",
                "required": ["tokens"],
                "properties": {"tokens": {"type": "array", "items": _ref("Token")}},
            },
            "Revoked": {
                "type": "object",
                "required": ["id", "revision", "deleted_keys"],
                "properties": {"id": integer, "revision": integer, "deleted_keys": integer},
            },
        },
    }


def document() -> Schema:
    """The whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tuco",
            "version": tuco.__version__,
            "description": "A dependable key-value store service. Errors are JSON {error, message}; see the README. "
            "Any request may carry an X-Request-Id (1 to 128 visible ASCII characters): its answer echoes it, and the "
            "access log (TUCO_ACCESS_LOG) records it; with the access log on, an answer without one gets a new one.",
        },
        "security": [{}, {"bearer": []}],
        "paths": _paths(),
        "components": _components(),
    }


def document_bytes() -> bytes:
    """The document as served and as kept in the repository (sorted keys, two-space indent, final newline)."""
    return (json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


if __name__ == "__main__":
    sys.stdout.buffer.write(document_bytes())
