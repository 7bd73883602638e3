"""Authentication and grants in process over ASGI: the matrix of endpoints and credentials, and the edge cases.

The matrix itself (:func:`run_matrix`) is shared with the end-to-end test on the
native server (``tests/e2e/test_auth.py``): both front ends enforce the same rules.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import structlog

from tests import build
from tuco import __version__
from tuco.core.tokens import Access, digest
from tuco.http.asgi import ASGIApp
from tuco.observability import Metrics
from tuco.service import Service
from tuco.testing import MemoryLog

BOOTSTRAP = "bootstrap-" + secrets.token_hex(24)
CASES = (
    "none",
    "malformed",
    "unknown",
    "revoked",
    "expired",
    "read_other",
    "read",
    "write",
    "read_all",
    "write_all",
    "admin",
    "metrics",
)
"""The credentials: five invalid ones, then read on other/, read and write on app/, read and write on every key
("": still not admin), an admin token, and a scraper's token with the metrics permission only."""
_I = 401  # an invalid or missing credential
_NOBODYS = 10**12  # a lease id nobody holds: the "own lease" of a credential that cannot grant one
_GRANTERS = ("write", "write_all", "admin")


def _row(*valid: int) -> tuple[int, ...]:
    """The statuses of the seven valid credentials, after 401 for each of the five invalid ones."""
    assert len(valid) == len(CASES) - 5
    return (_I,) * 5 + valid


# endpoint -> (method, path, body, the status for each of CASES)
MATRIX: dict[str, tuple[str, str, bytes | None, tuple[int, ...]]] = {
    "get key": ("GET", "/v1/key/app%2Fx", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "head key": ("HEAD", "/v1/key/app%2Fx", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "get key by its path": ("GET", "/v1/key/app/x", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "put key by its path": ("PUT", "/v1/key/app/y/z", b"v", _row(403, 403, 201, 403, 201, 201, 403)),
    "get key by alias": ("GET", "/v1/app%2Fx", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "long poll": ("GET", "/v1/key/app%2Fx?wait_revision=1&timeout=0", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "put key": ("PUT", "/v1/key/app%2Fy", b"v", _row(403, 403, 201, 403, 201, 201, 403)),
    "delete key": ("DELETE", "/v1/key/app%2Fz", None, _row(403, 403, 200, 403, 200, 200, 403)),
    "put other key": ("PUT", "/v1/key/apple", b"v", _row(403, 403, 403, 403, 201, 201, 403)),
    "post on a key": ("POST", "/v1/key/app%2Fx", b"", _row(405, 405, 405, 405, 405, 405, 405)),
    "list prefix": ("GET", "/v1/keys?prefix=app%2F", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "list everything": ("GET", "/v1/keys", None, _row(403, 403, 403, 200, 200, 200, 403)),
    "list a wider prefix": ("GET", "/v1/keys?prefix=ap", None, _row(403, 403, 403, 200, 200, 200, 403)),
    "watch prefix": ("HEAD", "/v1/watch?prefix=app%2F", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "watch key": ("HEAD", "/v1/watch?key=app%2Fx", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "watch everything": ("HEAD", "/v1/watch", None, _row(403, 403, 403, 200, 200, 200, 403)),
    "grant lease": ("POST", "/v1/leases", b'{"ttl": 60}', _row(403, 403, 201, 403, 201, 201, 403)),
    "read own lease": ("GET", "/v1/leases/{own_lease}", None, _row(404, 404, 200, 404, 200, 200, 403)),
    "keep own lease alive": ("POST", "/v1/leases/{own_lease}/keepalive", None, _row(403, 403, 200, 403, 200, 200, 403)),
    "attach to own lease": (
        "PUT",
        "/v1/key/app%2Fo{i}?lease={own_lease}",
        b"o",
        _row(403, 403, 201, 403, 201, 201, 403),
    ),
    "revoke own lease": ("DELETE", "/v1/leases/{fresh_own_lease}", None, _row(403, 403, 200, 403, 200, 200, 403)),
    "read another's lease": ("GET", "/v1/leases/{held_lease}", None, _row(404, 404, 404, 404, 404, 200, 403)),
    "key history": ("GET", "/v1/history/app%2Fx", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "key history by its path": ("GET", "/v1/history/app/x", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "key history by query": ("GET", "/v1/history?key=app%2Fx", None, _row(403, 200, 200, 200, 200, 200, 403)),
    "another key's history": ("GET", "/v1/history/apple", None, _row(403, 403, 403, 200, 200, 200, 403)),
    "keep another's lease alive": (
        "POST",
        "/v1/leases/{held_lease}/keepalive",
        None,
        _row(403, 403, 404, 403, 404, 200, 403),
    ),
    "attach to another's lease": (
        "PUT",
        "/v1/key/app%2Fa{i}?lease={held_lease}",
        b"a",
        _row(403, 403, 404, 403, 404, 201, 403),
    ),
    "revoke another's lease": (
        "DELETE",
        "/v1/leases/{fresh_held_lease}",
        None,
        _row(403, 403, 404, 403, 404, 200, 403),
    ),
    "create token": (
        "POST",
        "/v1/tokens",
        b'{"grants": [{"prefix": "x/", "permission": "read"}]}',
        _row(403, 403, 403, 403, 403, 201, 403),
    ),
    "list tokens": ("GET", "/v1/tokens", None, _row(403, 403, 403, 403, 403, 200, 403)),
    "read token": ("GET", "/v1/tokens/{token_id}", None, _row(403, 403, 403, 403, 403, 200, 403)),
    "revoke token": ("DELETE", "/v1/tokens/{fresh_token}", None, _row(403, 403, 403, 403, 403, 204, 403)),
    "metrics": ("GET", "/metrics", None, _row(403, 403, 403, 200, 200, 200, 200)),
    "readyz": ("GET", "/readyz", None, (200,) * len(CASES)),
    "healthz": ("GET", "/healthz", None, (200,) * len(CASES)),
    "no such path": ("GET", "/nope", None, _row(404, 404, 404, 404, 404, 404, 404)),
}


@dataclass
class Setup:
    """What the matrix needs made first: the credentials and the leases and tokens it consumes."""

    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    token_id: str = ""
    held_lease: int = 0
    own_leases: list[int] = field(default_factory=list)
    fresh_own_leases: list[int] = field(default_factory=list)
    fresh_held_leases: list[int] = field(default_factory=list)
    fresh_tokens: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)


def secret_of(token: str) -> str:
    """The part of a token that must never be shown: all after ``tuco_<id>_`` (the whole of a bootstrap token)."""
    return token.split("_", 2)[2] if token.startswith("tuco_") else token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(BOOTSTRAP)


async def create_token(client: httpx.AsyncClient, grants: list[tuple[str, str]], **extra: object) -> dict[str, object]:
    body = {"grants": [{"prefix": p, "permission": perm} for p, perm in grants], **extra}
    answer = await client.post("/v1/tokens", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    created: dict[str, object] = answer.json()
    return created


async def lease_with(client: httpx.AsyncClient, key: str | None, headers: dict[str, str] = ADMIN) -> int:
    """A lease granted with ``headers`` (the bootstrap token by default), with ``key`` attached if given."""
    granted = await client.post("/v1/leases", json={"ttl": 600}, headers=headers)
    assert granted.status_code == 201, granted.text
    lease = int(granted.json()["id"])
    if key is not None:
        put = await client.put(f"/v1/key/{key.replace('/', '%2F')}?lease={lease}", content=b"l", headers=headers)
        assert put.status_code == 201, put.text
    return lease


async def prepare(client: httpx.AsyncClient) -> Setup:
    """Keys, tokens for every case and the leases the matrix uses: each granter's own, and a holder's."""
    setup = Setup()
    for key in ("app%2Fx", "app%2Fz", "apple", "other%2Fo"):
        assert (await client.put(f"/v1/key/{key}", content=b"value", headers=ADMIN)).status_code == 201
    ends = int(time.time()) + 2
    expired = await create_token(
        client, [("", "admin")], expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends))
    )
    revoked = await create_token(client, [("", "admin")])
    gone = await client.delete(f"/v1/tokens/{revoked['id']}", headers=ADMIN)
    assert gone.status_code == 204
    tokens = {
        "read_other": await create_token(client, [("other/", "read")]),
        "read": await create_token(client, [("app/", "read")]),
        "write": await create_token(client, [("app/", "write")]),
        "read_all": await create_token(client, [("", "read")]),
        "write_all": await create_token(client, [("", "write")]),
        "admin": await create_token(client, [("", "admin")]),
        "metrics": await create_token(client, [("", "metrics")]),
    }
    holder = bearer(str((await create_token(client, [("app/", "write")]))["token"]))
    setup.token_id = str(tokens["read"]["id"])
    unknown = f"tuco_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    setup.headers = {
        "none": {},
        "malformed": {"Authorization": "Basic dXNlcjpwYXNz"},
        "unknown": bearer(unknown),
        "revoked": bearer(str(revoked["token"])),
        "expired": bearer(str(expired["token"])),
        **{name: bearer(str(created["token"])) for name, created in tokens.items()},
    }
    setup.secrets = [str(t["token"]) for t in (expired, revoked, *tokens.values())] + [BOOTSTRAP]
    setup.held_lease = await lease_with(client, "app/held", holder)
    for i, case in enumerate(CASES):
        if case in _GRANTERS:
            setup.own_leases.append(await lease_with(client, None, setup.headers[case]))
            setup.fresh_own_leases.append(await lease_with(client, f"app/d{i}", setup.headers[case]))
        else:
            setup.own_leases.append(_NOBODYS)
            setup.fresh_own_leases.append(_NOBODYS)
        setup.fresh_held_leases.append(await lease_with(client, f"app/h{i}", holder))
        setup.fresh_tokens.append(str((await create_token(client, [("t/", "read")]))["id"]))
    await asyncio.sleep(max(0.0, ends - time.time() + 0.05))  # the expired token has expired now
    return setup


async def run_matrix(
    client: httpx.AsyncClient, prepared_on: httpx.AsyncClient | None = None
) -> tuple[Setup, dict[tuple[str, str], int]]:
    """Every endpoint with every credential; returns the statuses that differ from MATRIX (none, if all is well).

    With ``prepared_on`` (another replica), the tokens, keys and leases are made there and ``client``'s
    replica catches up (a consistent read) before the matrix runs on it.
    """
    setup = await prepare(prepared_on or client)
    if prepared_on is not None:
        synced = await client.get("/v1/key/app%2Fx?consistent=true", headers=ADMIN)
        assert synced.status_code == 200, synced.text
    wrong: dict[tuple[str, str], int] = {}
    for name, (method, path, body, expected) in MATRIX.items():
        for i, case in enumerate(CASES):
            target = path.format(
                i=i,
                own_lease=setup.own_leases[i],
                fresh_own_lease=setup.fresh_own_leases[i],
                held_lease=setup.held_lease,
                fresh_held_lease=setup.fresh_held_leases[i],
                token_id=setup.token_id,
                fresh_token=setup.fresh_tokens[i],
            )
            answer = await client.request(method, target, content=body, headers=setup.headers[case])
            if answer.status_code != expected[i]:
                wrong[(name, case)] = answer.status_code
            if answer.status_code == 401:
                assert answer.headers["www-authenticate"].startswith("Bearer")
            if method != "HEAD" and answer.status_code in (401, 403, 404):
                error = {401: "unauthorized", 403: "forbidden", 404: "no_such_lease" if "lease" in name else None}
                if error[answer.status_code] is not None:
                    assert answer.json()["error"] == error[answer.status_code], (name, case, answer.text)
    return setup, wrong


async def check_listing_shows_only_granted(client: httpx.AsyncClient, setup: Setup) -> None:
    """A read token on app/ lists exactly the keys under app/ (never apple or other/o) and /readyz stays terse."""
    listing = await client.get("/v1/keys?prefix=app%2F&keys_only=true", headers=setup.headers["read"])
    assert listing.status_code == 200
    keys = [item["key"] for item in listing.json()["items"]]
    assert keys and all(key.startswith("app/") for key in keys)
    assert (await client.get("/readyz", headers=setup.headers["read"])).json() == {"ready": True}
    assert (await client.get("/readyz")).json() == {"ready": True}
    detailed = (await client.get("/readyz", headers=setup.headers["admin"])).json()
    assert detailed["ready"] is True and "log" in detailed
    assert (detailed["version"], detailed["build"]) == (__version__, build.EXPECTED)


def asgi_service(log: MemoryLog | None = None, *, metrics_public: bool = False) -> Service:
    return Service(log or MemoryLog(), None, Metrics(), access=Access(True, digest(BOOTSTRAP.encode()), metrics_public))


def run_asgi(check: Callable[[httpx.AsyncClient, Service], Awaitable[None]], service: Service | None = None) -> None:
    async def main() -> None:
        served = service or asgi_service()
        await served.start()
        transport = httpx.ASGITransport(app=ASGIApp(served), client=("10.1.2.3", 4567))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://tuco") as client:
                await check(client, served)
        finally:
            await served.aclose()

    asyncio.run(main())


def test_every_endpoint_answers_each_credential_with_its_exact_status_over_asgi() -> None:
    """The whole matrix over the ASGI front end: 401 for the five bad credentials, 403 or success by grant."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        setup, wrong = await run_matrix(client)
        assert wrong == {}
        await check_listing_shows_only_granted(client, setup)

    run_asgi(check)


def test_a_missing_credential_and_an_invalid_one_get_different_bearer_challenges() -> None:
    """No credential: a plain Bearer challenge; a bad one: error="invalid_token" (RFC 6750 section 3)."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        plain = await client.get("/v1/key/a")
        assert (plain.status_code, plain.headers["www-authenticate"]) == (401, 'Bearer realm="tuco"')
        bad = await client.get("/v1/key/a", headers=bearer("tuco_0123456789abcdef_" + "A" * 43))
        assert bad.headers["www-authenticate"] == 'Bearer realm="tuco", error="invalid_token"'
        assert "tuco_0123456789abcdef" not in bad.text

    run_asgi(check)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "bearer  x y",
        "Token abc",
        "Bearer " + "x" * 600,
        "Bearer tuco_0123456789abcdef_short",
        "Bearer tuco_0123456789ABCDEF_" + "A" * 43,
        "Bearer \u00e9t\u00e9",
    ],
)
def test_malformed_authorization_headers_are_401_never_a_crash(header: str) -> None:
    """Garbage, oversized and non-ASCII Authorization headers are 401 unauthorized, not 400 or 500."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        answer = await client.get("/v1/key/a", headers={b"Authorization": header.encode("utf-8")})
        assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized")

    run_asgi(check)


@pytest.mark.parametrize("header", ["tuco_0123456789abcdef_" + "A" * 43, "Token abc", "Basic dXNlcjpwYXNz"])
def test_a_header_without_the_bearer_scheme_is_told_how_to_send_the_token(header: str) -> None:
    """A bare token (or another scheme) is 401 saying to send ``Bearer <token>``: nothing about any token."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        answer = await client.get("/v1/key/a", headers={"Authorization": header})
        assert (answer.status_code, answer.json()) == (
            401,
            {
                "error": "unauthorized",
                "message": "the Authorization header must be 'Bearer <token>': the word Bearer, one space, then "
                "the token",
            },
        )
        assert answer.headers["www-authenticate"] == 'Bearer realm="tuco", error="invalid_request"'

    run_asgi(check)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "JSON"),
        (b"[]", "object"),
        (b'{"grants": []}', "1 to 64"),
        (b'{"grants": [{"prefix": "a", "permission": "root"}]}', "permission"),
        (b'{"grants": [{"prefix": 1, "permission": "read"}]}', "prefix"),
        (b'{"grants": [{"prefix": "a"}], "owner": "me"}', "unknown field"),
        (b'{"grants": [{"prefix": "\\ud800", "permission": "read"}]}', "prefix"),
        (b'{"grants": [{"prefix": "a", "permission": "read"}], "expires_at": "2020-01-01T00:00:00Z"}', "future"),
        (b'{"grants": [{"prefix": "a", "permission": "read"}], "expires_at": "2999-01-01"}', "time zone"),
        (b'{"grants": [{"prefix": "a", "permission": "read"}], "expires_at": "soon"}', "RFC 3339"),
        (b'{"grants": [{"prefix": "a", "permission": "read"}], "description": 5}', "description"),
        (b'{"grants": [{"prefix": "a", "permission": "read"}], "cert": " "}', "cert"),
        (b"{" + b" " * 17000 + b"}", "16384"),
    ],
)
def test_a_bad_token_creation_body_is_400_naming_the_problem(body: bytes, fragment: str) -> None:
    """Each malformed POST /v1/tokens body is 400 invalid_parameter, and no token is created."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        answer = await client.post("/v1/tokens", content=body, headers=ADMIN)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_parameter")
        assert fragment in answer.json()["message"]
        assert len(service.store.tokens) == 0

    run_asgi(check)


def test_a_created_token_is_shown_once_and_listed_without_its_secret() -> None:
    """POST answers the token once; GET /v1/tokens and GET /v1/tokens/{id} show grants, never the secret."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        created = await create_token(
            client, [("a/", "write")], description="ci", expires_at="2999-01-01T00:00:00+01:00"
        )
        token = str(created["token"])
        assert token.startswith(f"tuco_{created['id']}_") and len(token) == 5 + 16 + 1 + 43
        assert created["expires_at"] == "2998-12-31T23:00:00Z"
        assert created["grants"] == [{"prefix": "a/", "permission": "write"}]
        listed = await client.get("/v1/tokens", headers=ADMIN)
        assert [t["id"] for t in listed.json()["tokens"]] == [created["id"]]
        one = await client.get(f"/v1/tokens/{created['id']}", headers=ADMIN)
        for answer in (listed, one):
            assert secret_of(token) not in answer.text and "sha256" not in answer.text
        assert (await client.get("/v1/tokens/0000000000000000", headers=ADMIN)).status_code == 404
        assert (await client.delete("/v1/tokens/0000000000000000", headers=ADMIN)).status_code == 404
        assert (await client.put("/v1/key/a%2Fb", content=b"1", headers=bearer(token))).status_code == 201

    run_asgi(check)


def test_a_lease_revoke_cannot_delete_keys_outside_the_grants() -> None:
    """A write token on a/ cannot revoke its lease once an admin attached b/k (403, the key stays); keepalive works."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        writer = bearer(str((await create_token(client, [("a/", "write")]))["token"]))
        granted = await client.post("/v1/leases", json={"ttl": 600}, headers=writer)
        lease = granted.json()["id"]
        assert (await client.put(f"/v1/key/a%2F1?lease={lease}", content=b"1", headers=writer)).status_code == 201
        assert (await client.put(f"/v1/key/b%2Fk?lease={lease}", content=b"1", headers=writer)).status_code == 403
        assert (await client.put(f"/v1/key/b%2Fk?lease={lease}", content=b"1", headers=ADMIN)).status_code == 201
        refused = await client.delete(f"/v1/leases/{lease}", headers=writer)
        assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
        assert (await client.get("/v1/key/b%2Fk", headers=ADMIN)).status_code == 200
        keepalive = await client.post(f"/v1/leases/{lease}/keepalive", headers=writer)
        assert keepalive.status_code == 200  # its own lease: kept alive whatever an admin attached
        assert (await client.delete(f"/v1/leases/{lease}", headers=ADMIN)).status_code == 200

    run_asgi(check)


def test_the_service_checks_a_revoke_again_after_catching_up() -> None:
    """Service.revoke with a check refuses (ForbiddenError) when a key attached meanwhile is outside it."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        lease = await lease_with(client, "b/k")
        from tuco.errors import ForbiddenError

        with pytest.raises(ForbiddenError):
            await service.revoke(lease, lambda key: key.startswith("a/"))
        assert "b/k" in service.store

    run_asgi(check)


def test_metrics_open_with_the_setting_and_readyz_needs_read_on_everything_for_details() -> None:
    """TUCO_METRICS_PUBLIC serves /metrics to anyone; /readyz stays terse without read on every key."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/readyz")).json() == {"ready": True}

    run_asgi(check, asgi_service(metrics_public=True))


def test_audit_lines_name_the_token_and_client_never_the_secret() -> None:
    """token_created, token_revoked and request_denied lines carry ids and the client address, no secret."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        with structlog.testing.capture_logs() as lines:
            created = await create_token(client, [("a/", "read")])
            token = str(created["token"])
            await client.put("/v1/key/a%2Fb", content=b"1", headers=bearer(token))
            await client.get("/v1/key/a%2Fb", headers=bearer(token + "x"))
            await client.delete(f"/v1/tokens/{created['id']}", headers=ADMIN)
            await client.get("/v1/key/a%2Fb", headers=bearer(token))
        events = [(line["event"], line.get("reason"), line.get("token_id")) for line in lines]
        assert events == [
            ("token_created", None, created["id"]),
            ("request_denied", "no_grant", created["id"]),
            ("request_denied", "malformed", None),
            ("token_revoked", None, created["id"]),
            ("request_denied", "revoked", created["id"]),
        ]
        assert all(line["client"] == "10.1.2.3:4567" for line in lines)
        text = json.dumps(lines, default=str)
        assert secret_of(token) not in text and BOOTSTRAP not in text

    run_asgi(check)


def test_with_authentication_off_the_api_handle_is_the_plain_method() -> None:
    """Off, no guard stands in front: handle is the API's answer_open itself (nothing added per request)."""
    from tuco.http.api import KeyValueAPI

    api = KeyValueAPI(Service(MemoryLog()))
    assert api.handle == api.answer_open
    guarded = KeyValueAPI(asgi_service())
    assert guarded.handle == guarded.answer_guarded
    assert guarded.handle != guarded.answer_open


def test_a_token_remembered_as_verified_stops_working_when_it_expires_or_is_revoked() -> None:
    """The verified-credential cache never outlives the token: expiry and revocation apply to the next request."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/a%2Fk", content=b"v", headers=ADMIN)).status_code == 201
        ends = int(time.time()) + 2
        short = await create_token(
            client, [("a/", "read")], expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends))
        )
        plain = await create_token(client, [("a/", "read")])
        for created in (short, plain):
            assert (await client.get("/v1/key/a%2Fk", headers=bearer(str(created["token"])))).status_code == 200
        assert len(service.store.tokens.verified) == 2
        await asyncio.sleep(max(0.0, ends - time.time() + 0.05))
        assert (await client.get("/v1/key/a%2Fk", headers=bearer(str(short["token"])))).status_code == 401
        revoked = await client.delete(f"/v1/tokens/{plain['id']}", headers=ADMIN)
        assert (revoked.status_code, revoked.content, "content-length" in revoked.headers) == (204, b"", False)
        assert (await client.get("/v1/key/a%2Fk", headers=bearer(str(plain["token"])))).status_code == 401

    run_asgi(check)


def test_the_token_limit_answers_429_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_TOKENS live tokens a creation is 429 token_limit (a flood of creations cannot grow the registry)."""
    import tuco.limits

    monkeypatch.setattr(tuco.limits, "MAX_TOKENS", 2)

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await create_token(client, [("a/", "read")])
        await create_token(client, [("a/", "read")])
        refused = await client.post(
            "/v1/tokens", json={"grants": [{"prefix": "", "permission": "read"}]}, headers=ADMIN
        )
        assert (refused.status_code, refused.json()["error"]) == (429, "token_limit")
        assert len(service.store.tokens) == 2

    run_asgi(check)
