"""History.changes_of: a key's retained changes newest first, a transaction's write with the transaction's origin."""

from __future__ import annotations

import pytest

from tuco.core.history import History
from tuco.core.origin import Origin, Reason
from tuco.errors import HistoryCompactedError

A = Origin("a", 10)
T = Origin("t", 20, Reason.RANGE_DELETE)


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
