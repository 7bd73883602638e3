"""A PostgreSQL replica's estimate of the database's clock is never behind it, so reads never serve an ended key."""

from __future__ import annotations

import time

from tuco.log.postgres import PostgresTransactionLog


def test_a_lopsided_round_trip_never_puts_the_estimate_behind_the_database() -> None:
    """The database read its clock 5 ms into a 40 ms trip: the estimate is at or ahead of it, by at most the trip.

    The middle of the trip would put it 15 ms behind, and a key would be served
    15 ms past its deadline (seen as a read 2 ms late on a loaded machine).
    """
    log = PostgresTransactionLog("postgresql://tuco@127.0.0.1/tuco")
    asked = time.time_ns() - 40_000_000  # asked 40 ms ago; the answer arrives now
    database_clock_then = (asked + 5_000_000) // 1_000_000  # same machine: the database's clock is ours
    log._see_clock(database_clock_then, asked)
    ours = time.time_ns() // 1_000_000
    estimate = log.now_ms()
    assert ours <= estimate <= ours + 41


def test_the_tightest_of_the_recent_readings_is_used() -> None:
    """A quick trip, then a slow one: the quick one's bound, the tighter, stays in use."""
    log = PostgresTransactionLog("postgresql://tuco@127.0.0.1/tuco")
    now = time.time_ns()
    log._see_clock(now // 1_000_000 + 500, now - 1_000_000)  # a database 500 ms ahead, read 1 ms into the trip
    log._see_clock((now - 200_000_000) // 1_000_000 + 500, now - 300_000_000)  # read 100 ms into a slow trip
    assert log.now_ms() - time.time_ns() // 1_000_000 in range(500, 503)
