"""The token operations as data (admin only): create, list and revoke, as :mod:`tuco.client._calls` does the rest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from tuco.client._calls import Answer, Call, _body, _expect
from tuco.errors import InvalidRequestError

__all__ = ["Grant", "Token", "create_token", "list_tokens", "revoke_token"]


class Grant(NamedTuple):
    """Permission ``read``, ``write`` or ``admin`` on the keys that start with ``prefix``."""

    prefix: str
    permission: str


class Token(NamedTuple):
    """A token as the server describes it; ``token`` (the secret) only in the answer that created it."""

    id: str
    description: str
    grants: tuple[Grant, ...]
    expires_at: str | None
    cert: str | None = None
    token: str | None = None


def _token(body: Mapping[str, Any]) -> Token:
    grants = tuple(Grant(str(g["prefix"]), str(g["permission"])) for g in body.get("grants", ()))
    expires = body.get("expires_at")
    cert = body.get("cert")
    secret = body.get("token")
    return Token(
        str(body["id"]),
        str(body.get("description", "")),
        grants,
        expires if isinstance(expires, str) else None,
        cert if isinstance(cert, str) else None,
        secret if isinstance(secret, str) else None,
    )


def create_token(
    grants: tuple[Grant, ...], description: str = "", expires_at: str | None = None, cert: str | None = None
) -> Call[Token]:
    """``POST /v1/tokens`` (admin): a new token, its secret shown this once; or a grant to a certificate name."""
    payload: dict[str, Any] = {
        "description": description,
        "grants": [{"prefix": grant.prefix, "permission": grant.permission} for grant in grants],
    }
    if expires_at is not None:
        payload["expires_at"] = expires_at
    if cert is not None:
        payload["cert"] = cert

    def parse(answer: Answer) -> Token:
        _expect(answer, (201,))
        return _token(_body(answer))

    headers = (("Content-Type", "application/json"),)
    return Call("POST", "/v1/tokens", parse, headers=headers, body=json.dumps(payload).encode(), idempotent=False)


def list_tokens() -> Call[tuple[Token, ...]]:
    """``GET /v1/tokens`` (admin): every live token, without secrets."""

    def parse(answer: Answer) -> tuple[Token, ...]:
        _expect(answer, (200,))
        return tuple(_token(raw) for raw in _body(answer).get("tokens", ()))

    return Call("GET", "/v1/tokens", parse)


def revoke_token(token_id: str) -> Call[None]:
    """``DELETE /v1/tokens/{id}`` (admin): the token stops working on every replica."""
    if not token_id or not token_id.isalnum():
        raise InvalidRequestError("a token id is letters and digits, as 'tuco token list' shows")

    def parse(answer: Answer) -> None:
        _expect(answer, (200, 204))

    return Call("DELETE", f"/v1/tokens/{token_id}", parse)
