"""Tokens on two PostgreSQL replicas: created on one, used on the other; revoked on one, refused on the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tests.e2e.test_auth import ADMIN, secured
from tests.fix_db import fetch
from tests.http.test_auth import bearer, run_matrix, secret_of

pytestmark = pytest.mark.postgres

StartTuco = Callable[..., TucoProcess]

# The stated bound: a replica learns a creation or revocation within one poll interval
# (TUCO_POLL_INTERVAL_SECONDS, here 0.5 s, with LISTEN/NOTIFY off so the poll alone is tested)
# plus the time to apply it. The test allows 5 s on a loaded 2-core machine.
POLL_INTERVAL = 0.5
BOUND_SECONDS = 5.0


def _until(check: Callable[[], bool], what: str) -> float:
    """Seconds until ``check`` holds; fails past the bound."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > BOUND_SECONDS:
            raise AssertionError(f"{what} not seen within {BOUND_SECONDS} s")
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_token_created_on_one_replica_works_on_the_other_and_its_revocation_reaches_it(
    tuco: StartTuco, pg_dsn: str, tmp_path: Path
) -> None:
    """B honours A's new token and refuses it after A revokes it, each within the poll bound; no secret at rest."""
    env = secured(tmp_path, TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    a = tuco(**env, TUCO_DATA_DIR="/nonexistent/a")
    b = tuco(
        **env,
        TUCO_DATA_DIR="/nonexistent/b",
        TUCO_POLL_INTERVAL_SECONDS=str(POLL_INTERVAL),
        TUCO_LISTEN_NOTIFY="false",
    )
    with a.client() as on_a, b.client() as on_b:
        created = on_a.post(
            "/v1/tokens", json={"grants": [{"prefix": "app/", "permission": "write"}]}, headers=ADMIN
        ).json()
        token = bearer(created["token"])
        learned = _until(
            lambda: on_b.put("/v1/key/app%2Fk", content=b"v", headers=token).status_code == 201, "the creation"
        )
        assert on_b.put("/v1/key/other", content=b"v", headers=token).status_code == 403
        assert on_a.delete(f"/v1/tokens/{created['id']}", headers=ADMIN).status_code == 204
        assert on_a.get("/v1/key/app%2Fk", headers=token).status_code == 401  # at once where it was revoked
        refused = _until(lambda: on_b.get("/v1/key/app%2Fk", headers=token).status_code == 401, "the revocation")
        assert on_b.delete(f"/v1/tokens/{created['id']}", headers=ADMIN).status_code == 404
        print(f"creation seen on B after {learned:.3f} s, revocation after {refused:.3f} s")

    # A fresh replica bootstraps the live tokens from tuco_tokens (the revoked one is not there).
    kept = None
    with a.client() as on_a:
        kept = on_a.post("/v1/tokens", json={"grants": [{"prefix": "", "permission": "read"}]}, headers=ADMIN).json()
    c = tuco(**env, TUCO_DATA_DIR="/nonexistent/c")
    with c.client() as on_c:
        assert on_c.get("/v1/key/app%2Fk", headers=bearer(kept["token"])).status_code == 200
        assert on_c.get("/v1/key/app%2Fk", headers=bearer(created["token"])).status_code == 401
        listed = on_c.get("/v1/tokens", headers=ADMIN).json()["tokens"]
        assert [t["id"] for t in listed] == [kept["id"]]

    async def at_rest() -> bytes:
        rows = await fetch(pg_dsn, "SELECT key, value FROM tuco_events")
        rows += await fetch(pg_dsn, "SELECT id, record FROM tuco_tokens")
        return b"".join(bytes(r[0]) + bytes(r[1]) for r in rows)

    stored = asyncio.run(at_rest())
    assert created["id"].encode() in stored  # the events are there...
    for secret in (created["token"], kept["token"]):
        assert secret_of(secret).encode() not in stored  # ...but no secret
    assert b"bootstrap" not in stored
    for server in (a, b, c):
        output = server.output()
        assert secret_of(created["token"]) not in output and secret_of(kept["token"]) not in output


def test_a_lease_granted_by_b_on_one_replica_is_unusable_by_a_on_the_other(
    tuco: StartTuco, pg_dsn: str, tmp_path: Path
) -> None:
    """B grants on replica 2; on replica 1, which has not applied it yet (no NOTIFY, a 5 s poll), A's attach,
    keepalive, revoke and read are 404 and change nothing, while B uses it there; and B's revoke on replica 1,
    checked by the service after catching up, refuses a key an admin attached on replica 2 a moment before."""
    env = secured(tmp_path, TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    lagging = {"TUCO_LISTEN_NOTIFY": "false", "TUCO_POLL_INTERVAL_SECONDS": "5"}
    one = tuco(**env, **lagging, TUCO_DATA_DIR="/nonexistent/one")
    two = tuco(**env, **lagging, TUCO_DATA_DIR="/nonexistent/two")
    with one.client() as on_one, two.client() as on_two:

        def token(prefix: str) -> dict[str, str]:
            body = {"grants": [{"prefix": prefix, "permission": "write"}]}
            return bearer(on_two.post("/v1/tokens", json=body, headers=ADMIN).json()["token"])

        a, b = token("shared/"), token("shared/")
        _until(lambda: on_one.get("/v1/key/shared%2Fnone", headers=b).status_code == 404, "the tokens on one")

        lease = on_two.post("/v1/leases", json={"ttl": 60}, headers=b).json()["id"]
        assert on_two.put(f"/v1/key/shared%2Fb?lease={lease}", content=b"B", headers=b).status_code == 201
        attach = on_one.put(f"/v1/key/shared%2Fa?lease={lease}", content=b"A", headers=a)
        assert (attach.status_code, attach.json()["error"]) == (404, "no_such_lease")
        assert on_one.post(f"/v1/leases/{lease}/keepalive", headers=a).status_code == 404
        assert on_one.delete(f"/v1/leases/{lease}", headers=a).status_code == 404
        assert on_one.get(f"/v1/leases/{lease}", headers=a).status_code == 404
        assert on_two.get(f"/v1/leases/{lease}", headers=a).status_code == 404
        assert on_one.get("/v1/key/shared%2Fa?consistent=true", headers=ADMIN).status_code == 404
        shown = on_two.get(f"/v1/leases/{lease}", headers=b).json()
        assert shown["keys"] == ["shared/b"]

        fresh = on_two.post("/v1/leases", json={"ttl": 60}, headers=b).json()["id"]  # unknown on one, for now
        assert on_one.post(f"/v1/leases/{fresh}/keepalive", headers=b).status_code == 200
        assert on_one.put(f"/v1/key/shared%2Fc?lease={fresh}", content=b"C", headers=b).status_code == 201

        assert on_two.put(f"/v1/key/admin%2Fk?lease={lease}", content=b"admin's", headers=ADMIN).status_code == 201
        refused = on_one.delete(f"/v1/leases/{lease}", headers=b)  # one learns of admin/k only by catching up
        assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
        assert on_two.get("/v1/key/admin%2Fk?consistent=true", headers=ADMIN).status_code == 200
        assert on_one.post(f"/v1/leases/{lease}/keepalive", headers=b).status_code == 200
        assert on_two.delete(f"/v1/leases/{lease}", headers=ADMIN).json()["deleted_keys"] == 2


def test_the_whole_matrix_on_one_replica_with_everything_made_on_the_other(
    tuco: StartTuco, pg_dsn: str, tmp_path: Path
) -> None:
    """Tokens, keys and leases (their owners) made on replica one; every endpoint and credential on replica two
    answers exactly as on a single server."""
    env = secured(tmp_path, TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    one = tuco(**env, TUCO_DATA_DIR="/nonexistent/one")
    two = tuco(**env, TUCO_DATA_DIR="/nonexistent/two")

    async def main() -> None:
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=10) as on_one,
            httpx.AsyncClient(base_url=two.url, timeout=10) as on_two,
        ):
            _, wrong = await run_matrix(on_two, prepared_on=on_one)
            assert wrong == {}

    asyncio.run(main())
