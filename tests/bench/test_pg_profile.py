"""bench/pg_profile.py's readings: a histogram off a /metrics page, and the CPU of this machine's PostgreSQL."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: bench/profile.py must not shadow the standard library's profile

_pg_profile: Any = importlib.import_module("pg_profile")

_PAGE = """# HELP tuco_log_commit_duration_seconds time from a batch handed to the log to its commit
# TYPE tuco_log_commit_duration_seconds histogram
tuco_log_commit_duration_seconds_bucket{le="0.001"} 3
tuco_log_commit_duration_seconds_bucket{le="+Inf"} 412
tuco_log_commit_duration_seconds_sum 0.8640000000000001
tuco_log_commit_duration_seconds_count 412
tuco_log_commit_batch_size_sum 13184.0
tuco_log_commit_batch_size_count 412
"""


def test_a_histogram_is_read_as_its_sum_and_count() -> None:
    assert _pg_profile._histogram(_PAGE, "tuco_log_commit_duration_seconds") == (0.8640000000000001, 412.0)
    assert _pg_profile._histogram(_PAGE, "tuco_log_commit_batch_size") == (13184.0, 412.0)


def test_a_histogram_missing_from_the_page_is_an_error_not_a_zero() -> None:
    with pytest.raises(KeyError):
        _pg_profile._histogram(_PAGE, "tuco_log_sync_duration_seconds")


@pytest.mark.postgres
def test_the_machines_postgresql_has_spent_cpu() -> None:
    """The server this suite runs against is a process named postgres, running since before the suite."""
    assert _pg_profile._postgres_cpu_seconds() > 0
