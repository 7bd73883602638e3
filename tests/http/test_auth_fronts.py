"""The authorization matrix over real sockets on both in-process front ends: the native server and uvicorn."""

from __future__ import annotations

import httpx

from tests.http.secured import FRONT_ENDS, run_secured
from tests.http.test_auth import check_listing_shows_only_granted, run_matrix
from tuco.service import Service


@FRONT_ENDS
def test_every_endpoint_answers_each_credential_with_its_exact_status_over_real_sockets(front_end: str) -> None:
    """The whole matrix (keys, listings, watches, long polls, own and others' leases, tokens, metrics) on the
    native server and under uvicorn: the same statuses as in process."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        setup, wrong = await run_matrix(client)
        assert wrong == {}
        await check_listing_shows_only_granted(client, setup)

    run_secured(front_end, check)
