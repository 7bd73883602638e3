"""The coordination helpers' decisions without I/O: whose turn it is, when a session is lost, where a request goes."""

from __future__ import annotations

import pytest

from tuco.client import Lease, OutcomeUnknownError
from tuco.client._calls import Item, delete, get, put
from tuco.client._election import LeaderTracker
from tuco.client._endpoints import Endpoints, split_urls, unreachable
from tuco.client._queue import Leader, Turn, contender_key, decide, leader_of, queue_prefix
from tuco.client._session import SessionState
from tuco.client._watch import WatchEvent
from tuco.errors import (
    ConfigurationError,
    InvalidRequestError,
    LeaseNotFoundError,
    ServerUnreachableError,
    UnavailableError,
)


def _item(key: str, created: int, value: bytes = b"") -> Item:
    return Item(key, value, created, created, 1)


def test_the_oldest_contenders_hold_and_each_waiter_watches_one_key() -> None:
    """With limit 1 the oldest holds and each waiter waits for its predecessor; with limit 2, for the one two ahead."""
    items = [_item("l/c", 30), _item("l/a", 10), _item("l/b", 20)]
    assert decide(30, items, "l/a", 10, 1) == Turn("held")
    assert decide(30, items, "l/b", 20, 1) == Turn("wait", "l/a")
    assert decide(30, items, "l/c", 30, 1) == Turn("wait", "l/b")
    assert decide(30, items, "l/b", 20, 2) == Turn("held")
    assert decide(30, items, "l/c", 30, 2) == Turn("wait", "l/a")


def test_a_listing_older_than_our_key_or_without_it_decides_nothing() -> None:
    """A replica behind our own write says ``behind``; our key missing (or re-created) says ``gone``."""
    items = [_item("l/a", 10)]
    assert decide(29, items, "l/b", 30, 1) == Turn("behind")
    assert decide(30, items, "l/b", 30, 1) == Turn("gone")
    assert decide(40, [_item("l/b", 35)], "l/b", 30, 1) == Turn("gone")


def test_names_and_keys() -> None:
    """A name is a non-empty prefix without a trailing slash; two keys of one lease differ."""
    assert queue_prefix("locks/a") == "locks/a/"
    for bad in ("", "locks/"):
        with pytest.raises(InvalidRequestError):
            queue_prefix(bad)
    first, second = contender_key("locks/a", 255), contender_key("locks/a", 255)
    assert first.startswith("locks/a/00000000000000ff-") and first != second


def test_the_leader_tracker_reports_each_change_once() -> None:
    """Puts behind the leader change nothing; a proclaim and a delete of the leader are changes."""
    tracker = LeaderTracker([_item("e/a", 5, b"A")])
    assert tracker.leader == Leader("e/a", b"A", 5, 5)
    assert tracker.feed(WatchEvent("put", 7, "e/b", b"B", 7, 1)) is False
    assert tracker.feed(WatchEvent("put", 8, "e/a", b"A2", 5, 2)) is True
    assert tracker.leader == Leader("e/a", b"A2", 5, 8)
    assert tracker.feed(WatchEvent("delete", 9, "e/a")) is True
    assert tracker.leader == Leader("e/b", b"B", 7, 7)
    assert tracker.feed(WatchEvent("delete", 10, "e/b")) is True and tracker.leader is None
    assert leader_of([]) is None


def test_a_session_is_alive_until_its_sure_end_and_lost_for_good() -> None:
    """Renewals push the sure end to send time + ttl; past it, or on LeaseNotFoundError, the session is lost."""
    state = SessionState(Lease(1, 3.0, 0), granted_at=100.0)
    assert state.alive(102.9) and state.next_wait(100.0) == 1.0
    state.renewed(Lease(1, 3.0, 0), sent_at=102.0)
    assert state.valid_until == 105.0 and state.alive(104.9)
    assert state.failed(UnavailableError("starting"), 103.0) is False
    assert state.next_wait(103.0) == pytest.approx(0.3)
    assert state.alive(105.0) is False
    state.renewed(Lease(1, 3.0, 0), sent_at=105.5)  # too late: a lost session stays lost
    assert state.alive(105.6) is False
    other = SessionState(Lease(2, 3.0, 0), granted_at=0.0)
    assert other.failed(LeaseNotFoundError(2), 0.1) is True and other.alive(0.2) is False


def test_urls_are_split_and_checked() -> None:
    """TUCO_URL a,b,c: spaces and trailing slashes dropped; a URL without a scheme is a configuration error."""
    assert split_urls(" http://a:1/, https://b:2 ") == ("http://a:1", "https://b:2")
    for bad in ("", " , ", "a:1", "http://a,b"):
        with pytest.raises(ConfigurationError):
            split_urls(bad)


def test_a_url_ending_in_v1_is_refused_saying_to_leave_it_out() -> None:
    """``--url http://host:8080/v1`` would ask for /v1/v1/key/...: refused with what to give instead."""
    for url in ("http://a:1/v1", "http://a:1/v1/", "https://a/proxy/v1"):
        with pytest.raises(ConfigurationError) as refused:
            split_urls(url)
        assert str(refused.value) == (
            f"give the server's URL without /v1 (tuco adds the /v1/... paths itself), not {url.rstrip('/')!r}"
        )
    assert split_urls("https://a/proxy/") == ("https://a/proxy",)  # a path prefix of a proxy is kept


def test_reads_rotate_writes_stick_and_a_failed_url_is_skipped() -> None:
    """GETs go round the URLs; writes stay on one until it fails; a failed URL is left out of both for a while."""
    endpoints = Endpoints(("http://a", "http://b", "http://c"))
    reads = {endpoints.pick(get("k")) for _ in range(3)}
    assert reads == {"http://a", "http://b", "http://c"}
    assert {endpoints.pick(put("k", "v")) for _ in range(3)} == {"http://a"}
    endpoints.failed("http://a")
    assert endpoints.pick(delete("k")) == "http://b"
    assert "http://a" not in {endpoints.pick(get("k")) for _ in range(6)}
    endpoints.failed("http://c")
    assert {endpoints.pick(get("k")) for _ in range(4)} == {"http://b"}


def test_only_a_sent_unrepeatable_call_has_an_unknown_outcome() -> None:
    """A conditional write that was sent: OutcomeUnknownError; not sent, or a plain write: ServerUnreachableError."""
    error = OSError("reset")
    conditional = put("k", "v", if_revision=3)
    assert isinstance(unreachable(conditional, "http://a", error, sent=True), OutcomeUnknownError)
    assert type(unreachable(conditional, "http://a", error, sent=False)) is ServerUnreachableError
    assert type(unreachable(put("k", "v"), "http://a", error, sent=True)) is ServerUnreachableError
    assert OutcomeUnknownError.code == "outcome_unknown" and issubclass(OutcomeUnknownError, ServerUnreachableError)
