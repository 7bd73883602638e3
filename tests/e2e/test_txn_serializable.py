"""Transaction histories on two PostgreSQL replicas (real `tuco serve` processes) are strictly serializable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess
from tests.test_txncheck import workload
from tests.txncheck import check_transactions

StartTuco = Callable[..., TucoProcess]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
def test_histories_on_two_postgresql_replicas_are_strictly_serializable(tuco: StartTuco, pg_dsn: str) -> None:
    """8 clients over two `tuco serve` replicas on one database, 60 random transactions each: the checker passes."""
    urls = [
        tuco(
            TUCO_LOG_BACKEND="postgres",
            TUCO_DATABASE_URL=pg_dsn,
            TUCO_DATA_DIR=f"/nonexistent/{name}",
            TUCO_PORT=str(free_port()),
        ).url
        for name in ("a", "b")
    ]
    records = asyncio.run(workload(urls, 8, 60, seed=11))
    assert check_transactions(records) == []
