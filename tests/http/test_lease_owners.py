"""Leases belong to the principal that granted them: others cannot use them, and to them they do not exist."""

from __future__ import annotations

import httpx

from tests.http.secured import FRONT_ENDS, run_secured, token_for
from tests.http.test_auth import ADMIN
from tuco.service import Service


async def _grant(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    granted = await client.post("/v1/leases", json={"ttl": 600}, headers=headers)
    assert granted.status_code == 201, granted.text
    return int(granted.json()["id"])


def _is_404_no_such_lease(answer: httpx.Response) -> bool:
    return answer.status_code == 404 and answer.json()["error"] == "no_such_lease"


@FRONT_ENDS
def test_another_tokens_lease_does_not_exist_for_a_token(front_end: str) -> None:
    """Token A cannot attach a key to, read, keep alive or revoke B's lease (404 each); B keeps full use of it."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        a = await token_for(client, ("a/", "write"))
        everywhere = await token_for(client, ("", "write"))  # write on every key is still not B
        b = await token_for(client, ("b/", "write"))
        held = await _grant(client, b)
        assert (await client.put(f"/v1/key/b%2Flock?lease={held}", content=b"B", headers=b)).status_code == 201
        empty = await _grant(client, b)
        for intruder in (a, everywhere):
            attach = await client.put(f"/v1/key/a%2Fx?lease={held}", content=b"A", headers=intruder)
            assert _is_404_no_such_lease(attach), attach.text
            for lease in (held, empty):
                assert _is_404_no_such_lease(await client.get(f"/v1/leases/{lease}", headers=intruder))
                assert _is_404_no_such_lease(await client.post(f"/v1/leases/{lease}/keepalive", headers=intruder))
                assert _is_404_no_such_lease(await client.delete(f"/v1/leases/{lease}", headers=intruder))
        assert (await client.get("/v1/key/a%2Fx", headers=ADMIN)).status_code == 404  # nothing was attached
        shown = await client.get(f"/v1/leases/{held}", headers=b)
        assert (shown.status_code, shown.json()["keys"]) == (200, ["b/lock"])
        assert (await client.post(f"/v1/leases/{held}/keepalive", headers=b)).status_code == 200
        assert (await client.post(f"/v1/leases/{empty}/keepalive", headers=b)).status_code == 200
        revoked = await client.delete(f"/v1/leases/{held}", headers=b)
        assert (revoked.status_code, revoked.json()["deleted_keys"]) == (200, 1)
        assert (await client.delete(f"/v1/leases/{empty}", headers=b)).status_code == 200

    run_secured(front_end, check)


@FRONT_ENDS
def test_an_admin_may_act_on_any_lease(front_end: str) -> None:
    """An admin token reads, keeps alive, attaches to and revokes a lease another token granted."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        b = await token_for(client, ("b/", "write"))
        admin = await token_for(client, ("", "admin"))
        lease = await _grant(client, b)
        for headers in (admin, ADMIN):
            assert (await client.get(f"/v1/leases/{lease}", headers=headers)).status_code == 200
            assert (await client.post(f"/v1/leases/{lease}/keepalive", headers=headers)).status_code == 200
        assert (await client.put(f"/v1/key/b%2Fk?lease={lease}", content=b"v", headers=admin)).status_code == 201
        revoked = await client.delete(f"/v1/leases/{lease}", headers=admin)
        assert (revoked.status_code, revoked.json()["deleted_keys"]) == (200, 1)

    run_secured(front_end, check)
