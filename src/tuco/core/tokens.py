"""Tokens and grants, as pure values: parsing, the stored record, permission checks, the registry.

A token is ``tuco_<id>_<secret>``: a 16-hex-digit id and a 256-bit secret
(43 URL-safe base64 characters). Only the SHA-256 of the secret is kept (in
the log, so in memory and at rest): the secret is random, not a password, so
a slow hash would add nothing but cost per request. Verification compares
digests with :func:`hmac.compare_digest`. A certificate identity, named by its
kind (``dns:svc-a``, ``uri:spiffe://...``, ``email:...``, ``ip:...``, ``cn:svc-a``;
see :mod:`tuco.http._tls` for which one a certificate has), can be given grants
the same way, with no secret at all.

Nothing here does I/O or reads a clock: callers pass ``now`` (Unix ms).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "IDENTITY_KINDS",
    "ID_LENGTH",
    "MAX_TOKENS",
    "MAX_VERIFIED",
    "Access",
    "Grant",
    "Permission",
    "Principal",
    "TokenRecord",
    "Tokens",
    "Verified",
    "allows",
    "allows_any",
    "check_bootstrap_token",
    "decode_record",
    "digest",
    "encode_record",
    "format_token",
    "identity_problem",
    "is_bearer",
    "parse_bearer",
    "parse_token",
    "permission_of",
]

ID_LENGTH = 16
_SECRET_LENGTH = 43
_TOKEN = re.compile(rb"tuco_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token: what a Bearer credential may be
MIN_BOOTSTRAP_LENGTH = 32
_MIN_BOOTSTRAP_DISTINCT = 10
MAX_CREDENTIAL_BYTES = 512
MAX_TOKENS = 10_000
"""Live tokens at most (each needs an admin to create): a bound on what the registry holds."""
IDENTITY_KINDS = ("cn", "dns", "uri", "email", "ip")
"""How a certificate identity is named in a grant: ``kind:value``."""


@dataclass(frozen=True, slots=True)
class Access:
    """How requests are let in: ``enabled`` (TUCO_AUTH=token), the bootstrap token's digest, metrics open or not."""

    enabled: bool = False
    bootstrap_sha256: bytes = b""
    metrics_public: bool = False


class Permission(enum.IntEnum):
    """What a grant allows on its prefix; each level implies the ones below it.

    ``METRICS`` is below every key permission: it reads ``/metrics`` and no key, so a scraper's token
    learns nothing stored. It is granted on every key (prefix ""), as read on every key implies it.
    """

    METRICS = 0
    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


_BY_LABEL = {permission.label: permission for permission in Permission}


class Grant(NamedTuple):
    """``permission`` on every key that starts with ``prefix`` ("" is every key)."""

    prefix: str
    permission: Permission


class Principal(NamedTuple):
    """Who a request acts as: ``name`` owns what it creates (a lease), an ``admin`` may act on anything.

    ``name`` is a token's id, or a certificate's identity (``dns:svc-a``): a
    certificate keeps its name when its grants are replaced, a token does not
    (new grants are a new token).
    """

    name: str
    admin: bool = False


class TokenRecord(NamedTuple):
    """A token as the log keeps it: no secret, only its digest (or, for a certificate, the identity).

    ``expires_at`` is Unix ms (0: never); ``created`` the revision that created it.
    """

    id: str
    description: str
    grants: tuple[Grant, ...]
    expires_at: int = 0
    sha256: bytes = b""
    cert: str = ""
    created: int = 0

    def expired(self, now: int) -> bool:
        return 0 < self.expires_at <= now

    @property
    def principal(self) -> Principal:
        """Who a request with this credential acts as (admin: an admin grant on every key)."""
        return Principal(self.cert or self.id, allows(self.grants, "", Permission.ADMIN))

    def public(self) -> dict[str, object]:
        """What ``GET /v1/tokens`` shows: never the digest."""
        return {
            "id": self.id,
            "description": self.description,
            "grants": [{"prefix": g.prefix, "permission": g.permission.label} for g in self.grants],
            "expires_at": self.expires_at or None,
            "cert": self.cert or None,
            "revision": self.created,
        }


def digest(secret: bytes) -> bytes:
    """The SHA-256 of a secret: what is stored and compared."""
    return hashlib.sha256(secret).digest()


def format_token(id: str, secret: str) -> str:
    return f"tuco_{id}_{secret}"


def parse_token(token: bytes) -> tuple[str, bytes] | None:
    """``(id, secret)`` of a ``tuco_<id>_<secret>`` token, None if it is not one."""
    found = _TOKEN.fullmatch(token)
    if found is None:
        return None
    return found.group(1).decode("ascii"), found.group(2)


def is_bearer(header: bytes) -> bool:
    """Whether an Authorization header names the Bearer scheme (its credential may still be malformed)."""
    return header.strip().partition(b" ")[0].lower() == b"bearer"


def parse_bearer(header: bytes) -> bytes | None:
    """The credential of ``Authorization: Bearer <credential>``; None if the header is anything else."""
    scheme, _, credential = header.strip().partition(b" ")
    credential = credential.strip()
    if scheme.lower() != b"bearer" or not credential or len(credential) > MAX_CREDENTIAL_BYTES:
        return None
    if b" " in credential or not credential.isascii():
        return None
    return credential


def check_bootstrap_token(token: str) -> str | None:
    """Why ``token`` is too weak (or malformed) to be the bootstrap admin token; None if it will do.

    Accepted: at least 32 characters of RFC 6750's token alphabet (letters, digits,
    ``-._~+/``, trailing ``=``), with at least 10 distinct characters, such as
    ``openssl rand -hex 32`` or ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``.
    """
    if len(token) < MIN_BOOTSTRAP_LENGTH:
        return f"it is {len(token)} characters; at least {MIN_BOOTSTRAP_LENGTH} are required"
    if _B64TOKEN.fullmatch(token) is None:
        return "it may hold only letters, digits and - . _ ~ + / (and trailing =)"
    if len(token) > MAX_CREDENTIAL_BYTES:
        return f"it is over {MAX_CREDENTIAL_BYTES} characters"
    if len(set(token)) < _MIN_BOOTSTRAP_DISTINCT:
        return f"it has fewer than {_MIN_BOOTSTRAP_DISTINCT} distinct characters: use a random one"
    return None


def allows(grants: Iterable[Grant], key: str, need: Permission) -> bool:
    """Whether a grant with at least ``need`` covers ``key`` (or a whole prefix asked for)."""
    return any(grant.permission >= need and key.startswith(grant.prefix) for grant in grants)


def allows_any(grants: Iterable[Grant], need: Permission) -> bool:
    """Whether some grant has at least ``need`` on some prefix."""
    return any(grant.permission >= need for grant in grants)


def encode_record(record: TokenRecord) -> bytes:
    """The record's bytes as a TOKEN_CREATE event's value (JSON; the id is the event's key)."""
    payload: dict[str, object] = {
        "description": record.description,
        "grants": [[g.prefix, g.permission.label] for g in record.grants],
    }
    if record.expires_at:
        payload["expires_at"] = record.expires_at
    if record.sha256:
        payload["sha256"] = record.sha256.hex()
    if record.cert:
        payload["cert"] = record.cert
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def decode_record(id: str, value: bytes, created: int) -> TokenRecord:
    """The record of a TOKEN_CREATE event; ValueError if the bytes are not one."""
    payload = json.loads(value)
    if not isinstance(payload, dict):
        raise ValueError("a token record is a JSON object")
    grants = tuple(Grant(str(prefix), _BY_LABEL[str(label)]) for prefix, label in payload.get("grants", ()))
    sha256 = bytes.fromhex(payload["sha256"]) if payload.get("sha256") else b""
    return TokenRecord(
        id,
        str(payload.get("description", "")),
        grants,
        int(payload.get("expires_at") or 0),
        sha256,
        _stored_identity(str(payload["cert"])) if payload.get("cert") else "",
        created,
    )


def identity_problem(identity: str) -> str | None:
    """What is wrong with a certificate identity as a grant names it (``kind:value``); None if nothing."""
    kind, colon, value = identity.partition(":")
    if not colon or kind not in IDENTITY_KINDS or not value.strip() or value != value.strip():
        kinds = ", ".join(f"{k}:" for k in IDENTITY_KINDS)
        return f"a certificate identity is named by its kind ({kinds}), such as dns:svc-a or cn:svc-a"
    return None


def _stored_identity(name: str) -> str:
    """A grant's certificate identity as stored; a bare name from before kinds named a common name.

    Those grants matched a certificate's CN first, so ``cn:`` keeps every certificate they matched
    by its CN and no other (a certificate matched by a SAN needs its grant made again, by kind).
    """
    kind, colon, _ = name.partition(":")
    return name if colon and kind in IDENTITY_KINDS else f"cn:{name}"


def permission_of(label: object) -> Permission | None:
    """``metrics``, ``read``, ``write`` or ``admin`` as a Permission; None for anything else."""
    return _BY_LABEL.get(label) if isinstance(label, str) else None


class Verified(NamedTuple):
    """A verified credential ready for the request path: its record, the prefixes it may read and write, who it is."""

    record: TokenRecord
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    expires_at: int
    principal: Principal

    @classmethod
    def of(cls, record: TokenRecord) -> Verified:
        reads = tuple(g.prefix for g in record.grants if g.permission >= Permission.READ)
        writes = tuple(g.prefix for g in record.grants if g.permission >= Permission.WRITE)
        return cls(record, reads, writes, record.expires_at, record.principal)


MAX_VERIFIED = 4096
"""Credentials remembered as verified at once (the cache is emptied when it is full)."""


class Tokens:
    """The live tokens, by id and by certificate identity, rebuilt from the log's token events.

    ``verified`` maps a credential as received to its :class:`Verified` form, so a
    token is hashed once, not per request. It lives in memory only (like the
    requests that carried it) and is emptied by every creation and revocation:
    a revoked token is never served from it.
    """

    __slots__ = ("_by_cert", "_by_id", "revoked", "verified")

    def __init__(self) -> None:
        self._by_id: dict[str, TokenRecord] = {}
        self._by_cert: dict[str, TokenRecord] = {}
        self.revoked: set[str] = set()
        """Ids revoked since the log's last compaction: for the audit line only (they are unknown either way)."""
        self.verified: dict[bytes, Verified] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[TokenRecord]:
        return iter(sorted(self._by_id.values(), key=lambda record: record.created))

    def get(self, id: str) -> TokenRecord | None:
        return self._by_id.get(id)

    def create(self, record: TokenRecord) -> None:
        self.verified.clear()
        self._by_id[record.id] = record
        if record.cert:
            self._by_cert[record.cert] = record

    def revoke(self, id: str) -> TokenRecord | None:
        self.verified.clear()
        record = self._by_id.pop(id, None)
        self.revoked.add(id)
        if record is not None and record.cert and self._by_cert.get(record.cert) is record:
            del self._by_cert[record.cert]
        return record

    def replace(self, other: Tokens) -> None:
        """Hold exactly ``other``'s tokens (a re-read registry), keeping this object: the guard holds it."""
        self.verified.clear()
        self._by_id = dict(other._by_id)
        self._by_cert = dict(other._by_cert)
        self.revoked = set(other.revoked)

    def verify(self, id: str, secret: bytes, now: int) -> TokenRecord | None:
        """The live record whose secret this is; None if unknown, revoked, expired or wrong (constant-time compare)."""
        record = self._by_id.get(id)
        if record is None or not record.sha256:
            return None
        if not hmac.compare_digest(record.sha256, digest(secret)):
            return None
        if record.expires_at and record.expires_at <= now:
            return None
        return record

    def for_cert(self, identity: str, now: int) -> TokenRecord | None:
        """The live grants of a certificate identity, None if it has none."""
        record = self._by_cert.get(identity)
        if record is None or record.expired(now):
            return None
        return record

    def live(self, now: int) -> list[TokenRecord]:
        """Every record not yet expired, by creation: what a compaction keeps."""
        return [record for record in self if not record.expired(now)]
