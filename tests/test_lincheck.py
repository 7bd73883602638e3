"""The linearizability checker judges known histories correctly (before it judges tuco's)."""

from __future__ import annotations

import math
import random
import time

import pytest

from tests.lincheck import History, Op, check_history, check_key, check_stale_reads

INF = math.inf


def w(value: bytes | None, call: float, ret: float, outcome: str = "ok", key: str = "k") -> Op:
    return Op(key, "write", value, call, ret, outcome)  # type: ignore[arg-type]


def r(value: bytes | None, call: float, ret: float, key: str = "k", consistent: bool = True) -> Op:
    return Op(key, "read", value, call, ret, consistent=consistent)


def cas(expect: bytes | None, value: bytes | None, call: float, ret: float, outcome: str = "ok") -> Op:
    return Op("k", "cas", value, call, ret, outcome, expect)  # type: ignore[arg-type]


def test_a_sequential_history_is_linearizable() -> None:
    """Write, read, a CAS that matched, a CAS that did not, a delete, a read of nothing: all in order."""
    ops = [
        w(b"a", 0, 1),
        r(b"a", 2, 3),
        cas(b"a", b"b", 4, 5),
        cas(b"a", b"c", 6, 7, "fail"),
        r(b"b", 8, 9),
        w(None, 10, 11),
        r(None, 12, 13),
    ]
    assert check_key(ops) == (True, "")


def test_a_read_overlapping_a_write_may_see_either_value() -> None:
    """A read concurrent with a write may return the old or the new value."""
    assert check_key([w(b"a", 0, 10), r(None, 1, 2)])[0]
    assert check_key([w(b"a", 0, 10), r(b"a", 1, 2)])[0]


def test_a_lost_update_is_not_linearizable() -> None:
    """Two CAS from the same value both succeeding (one update lost) is refused, even when they overlap."""
    ops = [w(b"a", 0, 1), cas(b"a", b"b", 2, 5), cas(b"a", b"c", 3, 6)]
    ok, why = check_key(ops)
    assert not ok
    assert "cas" in why


def test_a_stale_consistent_read_is_not_linearizable() -> None:
    """A read that starts after a write was acknowledged and returns the older value is refused."""
    assert not check_key([w(b"a", 0, 1), w(b"b", 2, 3), r(b"a", 4, 5)])[0]


def test_a_write_seen_then_unseen_is_not_linearizable() -> None:
    """Once a read returned a pending write's value, a later read may not return the value before it."""
    ops = [w(b"a", 0, 100), r(b"a", 1, 2), r(None, 3, 4)]
    assert not check_key(ops)[0]
    assert check_key([w(b"a", 0, 100), r(None, 1, 2), r(b"a", 3, 4)])[0]  # the other way round is fine


def test_a_read_of_a_value_never_written_is_not_linearizable() -> None:
    """A read returning something nobody wrote is refused."""
    assert not check_key([w(b"a", 0, 1), r(b"z", 2, 3)])[0]


def test_an_unknown_write_may_have_happened_at_any_time_after_its_call_or_never() -> None:
    """A write with no answer may show up late, or never; but never before it was called, nor vanish once seen."""
    pending = w(b"a", 5, INF, "unknown")
    assert check_key([pending, r(None, 6, 7), r(b"a", 100, 101)])[0]
    assert check_key([pending, r(None, 6, 7), r(None, 100, 101)])[0]
    assert not check_key([pending, r(b"a", 0, 1)])[0]
    assert not check_key([pending, r(b"a", 6, 7), r(None, 8, 9)])[0]


def test_an_unknown_cas_took_effect_only_if_its_condition_held() -> None:
    """A CAS with no answer may have applied when its expected value was there; never otherwise."""
    assert check_key([w(b"a", 0, 1), cas(b"a", b"b", 2, INF, "unknown"), r(b"b", 3, 4)])[0]
    assert check_key([w(b"a", 0, 1), cas(b"a", b"b", 2, INF, "unknown"), r(b"a", 3, 4)])[0]
    assert not check_key([w(b"x", 0, 1), cas(b"a", b"b", 2, INF, "unknown"), r(b"b", 3, 4)])[0]


def test_a_refused_cas_must_have_met_another_value() -> None:
    """A 412 is wrong when the key certainly held the expected value all along."""
    assert not check_key([w(b"a", 0, 1), cas(b"a", b"b", 2, 3, "fail")])[0]
    assert check_key([w(b"a", 0, 1), w(b"c", 2, 10), cas(b"a", b"b", 3, 4, "fail")])[0]


def test_create_only_expects_the_key_absent() -> None:
    """A CAS expecting None (If-None-Match: *) succeeds on an absent key, once."""
    assert check_key([cas(None, b"a", 0, 1), cas(None, b"b", 2, 3, "fail"), r(b"a", 4, 5)])[0]
    assert not check_key([cas(None, b"a", 0, 1), cas(None, b"b", 2, 3)])[0]


def test_keys_are_checked_independently_and_the_failing_key_is_named() -> None:
    """A violation on one key fails the history and names that key; other keys' operations do not mix in."""
    ops = [w(b"1", 0, 1, key="x"), r(b"1", 2, 3, key="x"), w(b"a", 0, 1, key="y"), w(b"b", 2, 3, key="y")]
    ops.append(r(b"a", 4, 5, key="y"))
    verdict = check_history(ops)
    assert (verdict.ok, verdict.key, verdict.keys, verdict.operations) == (False, "y", 2, 5)
    assert check_history(ops[:-1]).ok


def test_default_reads_are_left_to_the_staleness_check() -> None:
    """A stale default read does not fail linearizability; it fails the bound once it is older than the bound."""
    ops = [w(b"a", 0, 1), w(b"b", 2, 3), r(b"a", 4, 5, consistent=False)]
    assert check_history(ops).ok
    assert check_stale_reads(ops, bound=5.0) == []
    problems = check_stale_reads(ops, bound=0.5)
    assert len(problems) == 1 and "misses" in problems[0]


def test_the_staleness_check_refuses_a_value_from_the_future_and_a_missing_write() -> None:
    """A default read may not return a value written after it returned, nor miss an old write as absent."""
    assert check_stale_reads([w(b"a", 10, 11), r(b"a", 0, 1, consistent=False)], bound=100)
    assert check_stale_reads([w(b"a", 0, 1), r(None, 10, 11, consistent=False)], bound=2)
    assert not check_stale_reads([w(b"a", 0, 1), w(None, 5, 12), r(None, 10, 11, consistent=False)], bound=2)


def _linearizable_history(rng: random.Random, clients: int, per_client: int) -> list[Op]:
    """Ops whose effects happen at a random moment inside each op's interval, on a real register."""
    planned = []
    clock = [0.0] * clients
    for c in range(clients):
        for n in range(per_client):
            call = clock[c] + rng.random()
            ret = call + rng.random() * 3
            planned.append((call + (ret - call) * rng.random(), call, ret, c, n))
            clock[c] = ret
    planned.sort()
    state: bytes | None = None
    ops = []
    for _, call, ret, c, n in planned:
        roll = rng.random()
        value = f"{c}-{n}".encode()
        if roll < 0.3:
            ops.append(Op("k", "read", state, call, ret, client=c))
        elif roll < 0.5:
            ops.append(Op("k", "write", value, call, ret, client=c))
            state = value
        elif roll < 0.9:
            expect = state if rng.random() < 0.5 else b"0-0"
            outcome = "ok" if state == expect else "fail"
            ops.append(Op("k", "cas", value, call, ret, outcome, expect, c))  # type: ignore[arg-type]
            state = value if outcome == "ok" else state
        else:
            ops.append(Op("k", "write", value, call, INF, "unknown", client=c))  # applied, never answered
            state = value
            clock[c] = INF
    return [op for op in ops if op.call < INF]


@pytest.mark.parametrize("seed", range(20))
def test_histories_made_linearizable_are_judged_linearizable(seed: int) -> None:
    """Random histories built from a real register with effects inside each interval all pass."""
    ops = _linearizable_history(random.Random(seed), clients=6, per_client=30)
    assert check_key(ops) == (True, "")


@pytest.mark.parametrize("seed", range(10))
def test_a_history_with_one_read_corrupted_is_refused(seed: int) -> None:
    """The same histories with one read made to return a value nobody wrote are refused."""
    rng = random.Random(seed)
    ops = _linearizable_history(rng, clients=4, per_client=20)
    reads = [n for n, op in enumerate(ops) if op.kind == "read"]
    n = rng.choice(reads)
    ops[n] = Op("k", "read", b"never written", ops[n].call, ops[n].ret)
    assert not check_key(ops)[0]


def test_sixteen_clients_on_one_key_are_checked_quickly() -> None:
    """16 clients of 40 operations on one hot key are decided in well under the suite's patience (measured)."""
    ops = _linearizable_history(random.Random(7), clients=16, per_client=40)
    started = time.monotonic()
    assert check_key(ops)[0]
    assert time.monotonic() - started < 30


def test_history_turns_revisions_into_the_values_they_name() -> None:
    """A CAS's If-Match revision becomes the value the write with that revision wrote; disagreement is an error."""
    history = History()
    history.ops.append((Op("k", "write", b"a", 0, 1), None, 7))
    history.ops.append((Op("k", "cas", b"b", 2, 3), 7, 9))
    history.ops.append((Op("k", "read", b"b", 4, 5), None, 9))
    resolved = history.resolved()
    assert resolved[1].expect == b"a"
    assert check_history(resolved).ok
    history.ops.append((Op("k", "read", b"c", 6, 7), None, 9))
    with pytest.raises(AssertionError, match="revision 9"):
        history.resolved()
