"""Transactions with authentication on: every compare and operation is authorized; one refusal, nothing happens."""

from __future__ import annotations

import httpx

from tests.http.secured import FRONT_ENDS, run_secured, token_for
from tests.http.test_auth import ADMIN
from tuco.service import Service


def put(key: str) -> dict[str, object]:
    return {"put": {"key": key, "value": "eA=="}}


@FRONT_ENDS
def test_each_operation_needs_its_own_grant(front_end: str) -> None:
    """A token writing a/ and reading r/: each op outside its grants is 403 with nothing written."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        token = await token_for(client, ("a/", "write"), ("r/", "read"))
        assert (await client.put("/v1/key/r%2F1", content=b"r", headers=ADMIN)).status_code == 201
        assert (await client.put("/v1/key/b%2F1", content=b"b", headers=ADMIN)).status_code == 201
        before = service.applied_revision
        refused = [
            {"success": [put("a/1"), put("b/1")]},  # write outside a/
            {"success": [put("a/1")], "failure": [put("r/2")]},  # the branch that would not run counts too
            {"compare": [{"key": "b/1", "target": "exists", "value": True}], "success": [put("a/1")]},
            {"success": [put("a/1"), {"get": {"key": "b/1"}}]},
            {"success": [{"list": {"prefix": "", "limit": 10}}]},  # read on every key
            {"success": [{"delete_prefix": {"prefix": "r/"}}]},  # read is not write
            {"success": [{"delete_prefix": {"prefix": "", "all": True}}]},
        ]
        for body in refused:
            answer = await client.post("/v1/txn", json=body, headers=token)
            assert (answer.status_code, answer.json()["error"]) == (403, "forbidden"), body
        assert service.applied_revision == before
        gone = await client.delete("/v1/keys?prefix=r/", headers=token)
        assert (gone.status_code, gone.json()["error"]) == (403, "forbidden")
        allowed = {
            "compare": [{"key": "r/1", "target": "value", "value": "cg=="}],
            "success": [
                put("a/1"),
                {"get": {"key": "r/1"}},
                {"list": {"prefix": "r/"}},
                {"delete_prefix": {"prefix": "a/x"}},
            ],
        }
        done = await client.post("/v1/txn", json=allowed, headers=token)
        assert (done.status_code, done.json()["succeeded"], done.json()["revision"]) == (200, True, before + 1)
        assert (await client.delete("/v1/keys?prefix=a/", headers=token)).json() == {
            "deleted": 1,
            "revision": before + 2,
        }
        reader = await token_for(client, ("r/", "read"))
        assert (
            await client.post("/v1/txn", json={"success": [{"get": {"key": "r/1"}}]}, headers=reader)
        ).status_code == 200
        anonymous = await client.post("/v1/txn", json={"success": [{"get": {"key": "r/1"}}]})
        assert anonymous.status_code == 401

    run_secured(front_end, check)
