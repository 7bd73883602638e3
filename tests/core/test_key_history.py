"""History.changes_of: a key's retained changes newest first, a transaction's write with the transaction's origin."""

from __future__ import annotations

import pytest

from tuco.core.history import AgedHistory, History
from tuco.core.origin import Reason, new_origin
from tuco.errors import HistoryCompactedError

A = new_origin("a", 10)
T = new_origin("t", 20, Reason.RANGE_DELETE)


def test_changes_of_a_key_newest_first_with_transactions_and_paging() -> None:
    """Only the key's PUTs and DELETEs, a transaction's write carrying the group's origin, below ``before``."""
    history = History(1 << 20)
    history.record(1, 1, "k", b"1", None, A)
    history.record(2, 1, "other", b"x", None, A)
    history.record(3, 4, "", b"", None, A)  # a lease record: no key
    history.record_group(4, [(4, 2, "k", b"", (b"1", 1, 1, 1), None), (4, 2, "j", b"", None, None)], T)
    history.record(5, 1, "k", b"2", None, None)
    assert [(c[0], c[1], c[5]) for c in history.changes_of("k", 6, 10)] == [(5, 1, None), (4, 2, T), (1, 1, A)]
    assert [c[0] for c in history.changes_of("k", 5, 1)] == [4]
    assert history.changes_of("k", 1, 10) == []
    assert history.changes_of("absent", 6, 10) == []


def test_changes_below_the_retained_history_are_410() -> None:
    """Once older changes were dropped, a page below the oldest retained revision raises with that revision."""
    history = History(1000)
    for revision in range(1, 20):
        history.record(revision, 1, "k", b"v", None, A)
    oldest = history.oldest_revision
    assert oldest > 0
    assert history.changes_of("k", oldest + 2, 10)[0][0] == oldest + 1
    with pytest.raises(HistoryCompactedError):
        history.changes_of("k", oldest + 1, 10)


def test_an_age_bound_drops_changes_made_that_long_before_the_newest() -> None:
    """With max_age_ms, a change older than the newest one by more than it goes (undated ones with the next dated)."""
    history = AgedHistory(1 << 20, max_age_ms=1000)
    history.record(1, 1, "k", b"1", None, None)  # replayed from a log before origins: no moment
    history.record(2, 1, "k", b"2", None, new_origin("a", 5_000))
    history.record(3, 1, "k", b"3", None, new_origin("a", 5_000))  # the same batch's moment
    history.record(4, 1, "k", b"4", None, new_origin("a", 5_600))
    assert (history.oldest_revision, len(history)) == (0, 4)
    history.record(5, 1, "k", b"5", None, new_origin("a", 6_000))  # exactly 1000 ms after revisions 2 and 3: kept
    assert (history.oldest_revision, len(history)) == (0, 5)
    history.record_group(6, [(6, 2, "k", b"", (b"5", 1, 5, 5), None)], new_origin("b", 6_001))
    assert (history.oldest_revision, len(history)) == (3, 3)  # 1 to 3 gone: the state at 3 is still known
    assert [c[0] for c in history.changes_of("k", 7, 10)] == [6, 5, 4]
    with pytest.raises(HistoryCompactedError) as caught:
        history.state_at(2)
    assert caught.value.oldest == 3
    history.record(7, 1, "k", b"7", None, new_origin("a", 100_000))
    assert (history.oldest_revision, len(history)) == (6, 1)
    assert history.retained_bytes == History(1 << 20).retained_bytes + 320 + 1  # one change: its overhead and key
