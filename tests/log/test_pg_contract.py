"""The TransactionLog contract (tuco.testing.check_transaction_log), passed by the PostgreSQL log."""

from __future__ import annotations

import asyncio

import pytest

from tuco.log.postgres import PostgresTransactionLog
from tuco.testing import check_transaction_log

pytestmark = pytest.mark.postgres


def test_postgres_log_passes_the_contract(pg_dsn: str) -> None:
    """PostgresTransactionLog, reopened on the same database each time, passes every check of the contract suite."""
    asyncio.run(check_transaction_log(lambda: PostgresTransactionLog(pg_dsn)))
