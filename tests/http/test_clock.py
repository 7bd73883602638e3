"""The native server's injectable clock: a manual one runs its timers in order, at their moment, and only then."""

from __future__ import annotations

from tuco.http._clock import ManualClock


def test_a_manual_clock_runs_due_timers_in_order_at_their_own_moment() -> None:
    """Advancing past several deadlines runs each callback once, earliest first, with now() at its deadline."""
    clock = ManualClock(start=100.0)
    seen: list[tuple[str, float]] = []
    clock.call_at(103.0, lambda: seen.append(("late", clock.now())))
    clock.call_at(101.0, lambda: seen.append(("early", clock.now())))
    clock.advance(0.5)
    assert seen == [] and clock.now() == 100.5
    clock.advance(5)
    assert seen == [("early", 101.0), ("late", 103.0)]
    assert clock.now() == 105.5 and clock.pending == 0


def test_a_cancelled_timer_never_runs_and_one_scheduled_by_a_callback_runs_when_due() -> None:
    """A cancelled timer is skipped; a timer a callback sets within the advanced span runs in the same advance."""
    clock = ManualClock(start=0.0)
    seen: list[str] = []
    clock.call_at(1.0, lambda: seen.append("cancelled")).cancel()
    clock.call_at(1.0, lambda: clock.call_at(2.0, lambda: seen.append("rearmed")))
    clock.advance(3)
    assert seen == ["rearmed"]


def test_wall_time_moves_with_a_manual_clock() -> None:
    """wall() advances by what the clock is advanced, so a certificate's notAfter can be reached without waiting."""
    clock = ManualClock()
    before = clock.wall()
    clock.advance(3600)
    assert abs(clock.wall() - before - 3600) < 1e-3  # Unix seconds near 1.7e9 carry float rounding
