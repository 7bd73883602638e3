"""The token routes: ``POST`` and ``GET /v1/tokens``, ``GET`` and ``DELETE /v1/tokens/{id}`` (admin only).

The guard has authorized the request (admin on every key) before it gets here
and handed on its caller, whose id the audit lines name;
this module creates, lists, shows and revokes tokens through the Service, and
writes the ``token_created`` / ``token_revoked`` audit lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from tuco.core.tokens import Grant, Permission, TokenRecord, identity_problem, permission_of
from tuco.errors import InvalidParameterError, LogError, TokenLimitError, TokenNotFoundError, TucoError
from tuco.http.answers import STARTING, error_answer, json_response, refusal
from tuco.http.messages import Answer, Request, Response
from tuco.http.params import parse_json
from tuco.service import Service

if TYPE_CHECKING:
    from tuco.http.handlers._base import Context  # no cycle: the context does not import this module

__all__ = ["TokenAPI", "rfc3339", "token", "tokens"]

_audit = structlog.get_logger("tuco.audit")
_DELETE = b"DELETE"
_MAX_BODY = 16 * 1024
_MAX_GRANTS = 64
_MAX_TEXT = 256


def rfc3339(ms: int) -> str | None:
    """Unix ms as RFC 3339 in UTC (``2026-12-01T12:00:00Z``); None for 0 (never)."""
    if not ms:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = moment.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")


def _shown(record: TokenRecord) -> dict[str, object]:
    shown = record.public()
    shown["expires_at"] = rfc3339(record.expires_at)
    return shown


class TokenAPI:
    """``POST /v1/tokens``, ``GET /v1/tokens``, ``GET`` and ``DELETE /v1/tokens/{id}``, over the service."""

    __slots__ = ("_service",)

    def __init__(self, service: Service) -> None:
        self._service = service

    def answer(self, request: Request, handler: str, segment: bytes, by: str | None) -> Answer:
        """The answer for one of the token routes, ``by`` the token id asking (None: authentication is off)."""
        service = self._service
        if service.phase.value == "starting":
            return STARTING
        if handler == "tokens":
            if request.method == b"POST":
                try:
                    fields = _creation(request.body, service.now_ms())
                except TucoError as exc:
                    return error_answer(exc)
                return self._create(request, fields, by)
            records = [_shown(record) for record in service.tokens]
            return json_response(200, {"tokens": records}, service.revision)
        id = segment.decode("latin-1")
        if request.method == _DELETE:
            return self._revoke(request, id, by)
        found = service.tokens.get(id)
        if found is None:
            return error_answer(TokenNotFoundError(id))
        return json_response(200, _shown(found))

    async def _create(self, request: Request, fields: _Creation, by: str | None) -> Response:
        description, grants, expires_at, cert = fields
        try:
            record, token = await self._service.create_token(description, grants, expires_at=expires_at, cert=cert)
        except LogError as exc:
            return refusal(exc, "no token created")
        except TokenLimitError as exc:
            return error_answer(exc)
        _audit.info(
            "token_created",
            token_id=record.id,
            description=record.description,
            grants=[f"{g.prefix}={g.permission.label}" for g in record.grants],
            expires_at=rfc3339(record.expires_at),
            cert=record.cert or None,
            by=by,
            client=request.client,
            revision=record.created,
        )
        shown = _shown(record)
        shown["token"] = token
        return json_response(201, shown, record.created)

    async def _revoke(self, request: Request, id: str, by: str | None) -> Response:
        try:
            event = await self._service.revoke_token(id)
        except LogError as exc:
            return refusal(exc, "not revoked")
        except TokenNotFoundError as exc:
            return error_answer(exc)
        _audit.info("token_revoked", token_id=id, by=by, client=request.client, revision=event.sequence)
        return Response(204, b"", None, (), event.sequence)


_Creation = tuple[str, list[Grant], int, str]
_FIELDS = frozenset(("description", "grants", "expires_at", "cert"))


def _creation(body: bytes, now: int) -> _Creation:
    """The fields of a creation body; InvalidParameterError naming what is wrong."""
    if len(body) > _MAX_BODY:
        raise InvalidParameterError(f"the body must be a JSON object of at most {_MAX_BODY} bytes")
    payload = parse_json(
        body, InvalidParameterError('the body must be JSON such as {"grants": [{"prefix": "a/", ...}]}')
    )
    if not isinstance(payload, dict):
        raise InvalidParameterError("the body must be a JSON object")
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise InvalidParameterError(f"unknown field {unknown[0]!r}: a token has description, grants, expires_at, cert")
    description = payload.get("description", "")
    if not isinstance(description, str) or len(description) > _MAX_TEXT or not _encodable(description):
        raise InvalidParameterError(f"description must be a string of at most {_MAX_TEXT} characters")
    raw_grants = payload.get("grants")
    if not isinstance(raw_grants, list) or not 1 <= len(raw_grants) <= _MAX_GRANTS:
        raise InvalidParameterError(f"grants must be a list of 1 to {_MAX_GRANTS} grants")
    grants = [_grant(raw) for raw in raw_grants]
    expires_at = _expires_at(payload.get("expires_at"), now)
    cert = payload.get("cert", "")
    if cert is None:
        cert = ""
    if not isinstance(cert, str) or len(cert) > _MAX_TEXT or (cert and not cert.strip()) or not _encodable(cert):
        raise InvalidParameterError(f"cert must be a certificate identity of at most {_MAX_TEXT} characters")
    problem = identity_problem(cert) if cert else None
    if problem is not None:
        raise InvalidParameterError(f"cert: {problem}")
    return description, grants, expires_at, cert


def _grant(raw: object) -> Grant:
    if not isinstance(raw, Mapping) or set(raw) - {"prefix", "permission"}:
        raise InvalidParameterError(
            'each grant is {"prefix": "a/", "permission": "read" | "write" | "admin"} or {"permission": "metrics"}'
        )
    prefix = raw.get("prefix", "")
    permission = permission_of(raw.get("permission"))
    if not isinstance(prefix, str) or len(prefix) > 65536 or not _encodable(prefix):
        raise InvalidParameterError('a grant\'s prefix must be a string ("" for every key)')
    if permission is None:
        raise InvalidParameterError('a grant\'s permission must be "read", "write", "admin" or "metrics"')
    if permission is Permission.METRICS and prefix:
        raise InvalidParameterError(
            f'a metrics grant is for /metrics, not for keys: leave its prefix out (not "{prefix[:64]}")'
        )
    return Grant(prefix, permission)


def _encodable(text: str) -> bool:
    """Whether ``text`` is UTF-8 encodable (JSON can carry lone surrogates, which no log can store)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _expires_at(raw: object, now: int) -> int:
    """Unix ms of an RFC 3339 timestamp with a time zone, in the future; 0 for none."""
    if raw is None:
        return 0
    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidParameterError("expires_at must be an RFC 3339 timestamp such as 2027-01-01T00:00:00Z")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidParameterError("expires_at must be an RFC 3339 timestamp such as 2027-01-01T00:00:00Z") from None
    if moment.tzinfo is None or "T" not in raw.upper():
        raise InvalidParameterError("expires_at must carry a time and a time zone (Z or +01:00)")
    ms = int(moment.timestamp() * 1000)
    if ms <= now:
        raise InvalidParameterError("expires_at must be in the future")
    return ms


def tokens(ctx: Context, request: Request, segment: bytes) -> Answer:
    """``/v1/tokens``: create one, or list them (the guard has checked admin on every key)."""
    caller = request.caller
    return TokenAPI(ctx.service).answer(request, "tokens", segment, caller.id if caller is not None else None)


def token(ctx: Context, request: Request, segment: bytes) -> Answer:
    """``/v1/tokens/{id}``: show or revoke one."""
    caller = request.caller
    return TokenAPI(ctx.service).answer(request, "token", segment, caller.id if caller is not None else None)
