"""JSON nested deeper than the parser recurses is a client's mistake: 400 with the endpoint's code, never a 500."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.http.test_ttl import FRONTS, Clock, serve
from tuco.service import Service

DEEP = b"[" * 100_000


@pytest.mark.parametrize("front", FRONTS)
def test_deeply_nested_json_bodies_and_page_tokens_answer_400(front: str) -> None:
    """A transaction, a lease grant, a token and a page token of 100,000 nested arrays each get their 400."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        txn = await client.post("/v1/txn", content=b'{"compare": ' + DEEP + b"}")
        assert (txn.status_code, txn.json()["error"]) == (400, "invalid_txn")
        bare = await client.post("/v1/txn", content=DEEP)
        assert (bare.status_code, bare.json()["error"]) == (400, "invalid_txn")
        token = await client.post("/v1/tokens", content=b"[" * 10_000)
        assert (token.status_code, token.json()["error"]) == (400, "invalid_parameter")
        grant = await client.post("/v1/leases", content=b"[" * 1000)
        assert (grant.status_code, grant.json()["error"]) == (400, "invalid_parameter")
        page_token = base64.urlsafe_b64encode(b"[" * 6000).rstrip(b"=").decode()
        page = await client.get("/v1/keys", params={"page_token": page_token})
        assert (page.status_code, page.json()["error"]) == (400, "invalid_page_token")

    serve(front, check)
