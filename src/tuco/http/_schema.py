"""The pieces of the OpenAPI document: schema builders, shared parameters and headers, and the component schemas.

The route table (:mod:`tuco.http.routes`) declares each operation's parameters,
body and success answers with these; :mod:`tuco.http.openapi` renders the
document from the table, and the error statuses from the error classes
(:data:`COMMON` for those any request can get, :class:`Fails` for an operation's own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from tuco import errors

__all__ = [
    "BINARY",
    "COMMON",
    "DURATION",
    "EMPTY",
    "ETAG_HEADER",
    "EXPIRES_HEADER",
    "HISTORY_PAGE",
    "KEY_PARAM",
    "LEASE_PARAM",
    "REVISION_HEADER",
    "TOKEN_PARAM",
    "WAIT_HEADER",
    "Common",
    "Fails",
    "Schema",
    "components",
    "error",
    "header",
    "json_answer",
    "path_param",
    "query",
    "ref",
]

Schema = dict[str, Any]
"""A JSON object of the document."""
EMPTY: Mapping[str, Schema] = {}
"""No header fields, no answers (a default never mutated)."""

DURATION = "^[0-9]+(\\.[0-9]{1,3})?(ms|s|m|h|d)?$"
BINARY: Schema = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

REVISION_HEADER: Schema = {
    "description": "The store's revision of a read; the revision a write created.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
ETAG_HEADER: Schema = {
    "description": 'The key\'s mod_revision as a strong tag: "N".',
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}
EXPIRES_HEADER: Schema = {
    "description": "Unix milliseconds at which the key is deleted.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
WAIT_HEADER: Schema = {
    "description": "A long poll's outcome.",
    "schema": {"type": "string", "enum": ["changed", "timeout"]},
}


_ORIGIN: Schema = {
    "by": {
        "type": "string",
        "description": "Who made the change: a token's id (never its secret), a certificate's identity, "
        "expirer, lease-revoke, or anonymous (authentication off). Absent where the log did not record it "
        "(written before origins were recorded).",
    },
    "at": {"type": "integer", "description": "When, Unix ms (the database's clock on PostgreSQL)."},
    "reason": {
        "type": "string",
        "enum": ["deleted", "expired", "lease_revoked", "range_delete"],
        "description": "Why a key was deleted (deletes only).",
    },
}
HISTORY_PAGE: Schema = {
    "type": "object",
    "required": ["key", "changes", "oldest_revision", "next_before"],
    "properties": {
        "key": {"type": "string"},
        "changes": {
            "type": "array",
            "description": "Newest first.",
            "items": {
                "type": "object",
                "required": ["revision", "type"],
                "properties": {
                    "revision": {"type": "integer", "minimum": 1},
                    "type": {"type": "string", "enum": ["put", "delete"]},
                    "value": {"type": "string", "format": "byte", "description": "A put's value, base64."},
                    **_ORIGIN,
                },
            },
        },
        "oldest_revision": {"type": "integer", "minimum": 0, "description": "The oldest revision retained."},
        "next_before": {
            "type": ["integer", "null"],
            "description": "The next page's before; null on the last page.",
        },
    },
}
"""``GET /v1/history/{key}``'s page: the changes, each with who made it, when and why."""


class Fails(NamedTuple):
    """An error an operation answers: the class gives the status and code; ``words`` describe it there."""

    error: type[errors.TucoError]
    words: str = "{code}"
    """The description's part for this error, ``{code}`` standing for its code."""
    headers: Mapping[str, Schema] = EMPTY
    """Header fields its answer carries."""


class Common(NamedTuple):
    """An answer any request may get, as a shared response of the document."""

    error: type[errors.TucoError]
    name: str
    description: str
    """Its words, ``{code}`` standing for the class's code."""
    headers: Mapping[str, Schema] = EMPTY


_UNAVAILABLE = "; ".join(
    ", ".join(error.code for error in classes)
    for classes in (
        (errors.StartingError, errors.ShuttingDownError, errors.TooManyConnectionsError, errors.ServerBusyError),
        (errors.LogFailedError, errors.LogUnavailableError, errors.LogClosedError),
    )
)
"""What a 503 may say: the server's phase or caps, then the log's state."""


def _text_header(name: str, description: str) -> dict[str, Schema]:
    return {name: {"description": description, "schema": {"type": "string"}}}


_ALLOW = _text_header("Allow", "The methods the path answers.")
_NO_CREDENTIAL = "{code} (TUCO_AUTH=token): no credential, or a malformed, unknown, revoked or expired one"

# What any request may get before or besides its operation (docs/concepts.md, "Errors"): the status is the class's.
COMMON: tuple[Common, ...] = (
    Common(errors.BadRequestError, "BadRequest", "{code} (malformed framing), or the operation's own invalid_* codes"),
    Common(errors.RequestTimeoutError, "RequestTimeout", "{code}: the request was not received in time"),
    Common(errors.ValueTooLargeError, "TooLarge", "{code}: a body over the limit, refused before it is read"),
    Common(errors.UriTooLongError, "UriTooLong", "{code}: a request target over 16 KiB (key_too_long on a PUT)"),
    Common(errors.MethodNotAllowedError, "MethodNotAllowed", "{code}: the path does not answer that method", _ALLOW),
    Common(errors.UnauthorizedError, "Unauthorized", _NO_CREDENTIAL, _text_header("WWW-Authenticate", "Bearer")),
    Common(errors.ForbiddenError, "Forbidden", "{code} (TUCO_AUTH=token): the credential holds no grant for this"),
    Common(errors.ExpectationFailedError, "ExpectationFailed", "{code}: an Expect other than 100-continue"),
    Common(errors.HeadersTooLargeError, "HeadersTooLarge", "{code}"),
    Common(errors.UnsupportedTransferCodingError, "NotImplemented", "{code}: a transfer coding other than chunked"),
    Common(
        errors.StartingError,
        "Unavailable",
        _UNAVAILABLE,
        _text_header("Retry-After", "Seconds to wait, when over a cap."),
    ),
)


def error(description: str, headers: Mapping[str, Schema] = EMPTY) -> Schema:
    """An error answer: the Error body, and its header fields if any."""
    response: Schema = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        response["headers"] = dict(headers)
    return response


def json_answer(description: str, schema: Schema, headers: Mapping[str, Schema] = EMPTY) -> Schema:
    """A JSON answer of ``schema``."""
    response: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = dict(headers)
    return response


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def query(name: str, description: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def header(name: str, description: str, pattern: str) -> Schema:
    schema = {"type": "string", "pattern": pattern}
    return {"name": name, "in": "header", "required": False, "description": description, "schema": schema}


def path_param(name: str, description: str, schema: Schema) -> Schema:
    """A route's parameter in its path (always required)."""
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


_SEGMENT: Schema = {"type": "string", "minLength": 1}
KEY_PARAM = path_param(
    "key",
    "The key: the rest of the path, percent-decoded once, so /v1/key/app/config and /v1/key/app%2Fconfig both "
    "name app/config. An empty, . or .. segment is refused (400 invalid_key: proxies rewrite them); a key that "
    "has one is sent with its / as %2F and its dots as %2E. Any non-empty UTF-8.",
    _SEGMENT,
)
TOKEN_PARAM = path_param("id", "A token's id (the part after tuco_ and before the secret).", _SEGMENT)
LEASE_PARAM = path_param("id", "A lease id: the revision of its grant.", {"type": "string", "pattern": "^[0-9]+$"})

_ERROR: Schema = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable machine-readable code (docs/concepts.md, Errors)."},
        "message": {"type": "string", "description": "tuco's fixed words for the code; never a traceback."},
        "oldest_revision": {"type": "integer", "description": "With history_compacted: the oldest servable revision."},
        "revision": {"type": "integer", "description": "With revision_ahead: the store's revision."},
        "requested": {"type": "integer", "description": "With revision_ahead: the revision the request resumes after."},
    },
}


def components() -> Schema:
    """The component schemas and security scheme (the shared responses are rendered with the document)."""
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
            "grants": {"type": "array", "items": ref("Grant")},
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
        "schemas": {
            "Error": _ERROR,
            "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}},
            "Readiness": {
                "type": "object",
                "required": ["ready"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "phase": {"type": "string"},
                    "version": {"type": "string"},
                    "build": {
                        "type": "string",
                        "description": "compiled (the request path built with mypyc) or pure (Python)",
                    },
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
                    "items": {"type": "array", "items": ref("Item")},
                    "next_page_token": {"type": ["string", "null"]},
                },
            },
            "LeaseRequest": {
                "type": "object",
                "required": ["ttl"],
                "properties": {
                    "ttl": {
                        "oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": DURATION}]
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
                    "permission": {"type": "string", "enum": ["read", "write", "admin", "metrics"]},
                },
            },
            "TokenRequest": {
                "type": "object",
                "required": ["grants"],
                "properties": {
                    "description": {"type": "string"},
                    "grants": {"type": "array", "minItems": 1, "maxItems": 64, "items": ref("Grant")},
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
                "properties": {"tokens": {"type": "array", "items": ref("Token")}},
            },
            "Revoked": {
                "type": "object",
                "required": ["id", "revision", "deleted_keys"],
                "properties": {"id": integer, "revision": integer, "deleted_keys": integer},
            },
            **_txn_schemas(item),
        },
    }


def _txn_schemas(item: Schema) -> dict[str, Schema]:
    """A transaction, its answer, and a range delete's answer."""
    integer = {"type": "integer"}
    text = {"type": "string"}
    b64 = {"type": "string", "contentEncoding": "base64"}

    def one(name: str, properties: Schema, required: list[str]) -> Schema:
        body = {"type": "object", "required": required, "properties": properties, "additionalProperties": False}
        return {"type": "object", "required": [name], "properties": {name: body}, "additionalProperties": False}

    op = {
        "oneOf": [
            one("put", {"key": text, "value": b64, "ttl": {"type": "number"}, "lease": integer}, ["key"]),
            one("delete", {"key": text}, ["key"]),
            one("delete_prefix", {"prefix": text, "all": {"type": "boolean"}}, ["prefix"]),
            one("get", {"key": text}, ["key"]),
            one("list", {"prefix": text, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}, ["prefix"]),
        ]
    }
    compare = {
        "type": "object",
        "required": ["key", "target", "value"],
        "properties": {
            "key": text,
            "target": {"enum": ["value", "mod_revision", "create_revision", "version", "exists"]},
            "op": {"enum": ["==", "!=", "<", ">"]},
            "value": {"description": "base64 for value, true/false for exists, else an integer"},
        },
    }
    result = {
        "type": "object",
        "description": "One key, named after the operation: put (revision), delete and delete_prefix (deleted), "
        "get (found and the key's fields), list (items, more)",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": {
            "type": "object",
            "properties": {
                **item["properties"],
                "revision": integer,
                "deleted": integer,
                "found": {"type": "boolean"},
                "items": {"type": "array", "items": item},
                "more": {"type": "boolean"},
            },
        },
    }
    return {
        "TxnRequest": {
            "type": "object",
            "properties": {
                "compare": {"type": "array", "items": compare},
                "success": {"type": "array", "items": op},
                "failure": {"type": "array", "items": op},
            },
            "additionalProperties": False,
        },
        "TxnAnswer": {
            "type": "object",
            "required": ["succeeded", "revision", "results"],
            "properties": {
                "succeeded": {"type": "boolean"},
                "revision": integer,
                "results": {"type": "array", "items": result},
            },
        },
        "RangeDeleted": {
            "type": "object",
            "required": ["deleted", "revision"],
            "properties": {"deleted": integer, "revision": integer},
        },
    }
