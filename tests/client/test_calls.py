"""The client's pure half: paths, conditions, answers into results and errors, retry decisions, watch frames."""

from __future__ import annotations

import pytest

from tuco.client import _calls as calls
from tuco.client._calls import Answer
from tuco.client._options import Backoff, Options
from tuco.client._watch import WatchCursor, WatchEvent
from tuco.errors import (
    ConfigurationError,
    HistoryCompactedError,
    InvalidRequestError,
    KeyTooLongError,
    LeaseNotFoundError,
    NoSuchKeyError,
    PreconditionFailedError,
    RevisionAheadError,
    UnavailableError,
)


def _error(status: int, code: str, extra: str = "") -> bytes:
    return ('{"error": "' + code + '", "message": "m"' + extra + "}").encode()


def test_key_path_escapes_everything_but_unreserved_and_dots() -> None:
    """Slashes, spaces, percent signs and dots are escaped, so a key is always one segment the server decodes back."""
    assert calls.key_path("a/b c%.") == "/v1/key/a%2Fb%20c%25%2E"
    assert calls.key_path("..") == "/v1/key/%2E%2E"
    assert calls.key_path("ключ") == "/v1/key/%D0%BA%D0%BB%D1%8E%D1%87"
    with pytest.raises(InvalidRequestError):
        calls.key_path("")


def test_conditions_become_the_exact_headers_and_make_the_write_unsafe_to_retry() -> None:
    """if_revision → If-Match "N", if_absent → If-None-Match *, if_exists → If-Match *; none is resent blindly."""
    assert calls.put("k", b"v", if_revision=7).headers == (("If-Match", '"7"'),)
    assert calls.put("k", b"v", if_absent=True).headers == (("If-None-Match", "*"),)
    assert calls.delete("k", if_exists=True).headers == (("If-Match", "*"),)
    assert calls.put("k", b"v").idempotent is True
    assert calls.put("k", b"v", if_revision=7).idempotent is False
    assert calls.delete("k").idempotent is True
    assert calls.delete("k", if_revision=7).idempotent is False
    assert calls.delete("k", if_exists=True).idempotent is False
    assert calls.grant(10).idempotent is False
    with pytest.raises(InvalidRequestError):
        calls.put("k", b"v", if_revision=7, if_absent=True)
    with pytest.raises(InvalidRequestError):
        calls.put("k", b"v", if_revision=0)
    with pytest.raises(InvalidRequestError):
        calls.delete("k", if_revision=1 << 63)  # no store reaches it: refused before anything is sent
    assert calls.delete("k", if_revision=(1 << 63) - 1).headers == (("If-Match", '"9223372036854775807"'),)
    with pytest.raises(InvalidRequestError):
        calls.put("k", b"v", ttl=1, lease=2)
    assert calls.put("k", "é", ttl=1.5).params == (("ttl", "1500ms"),)
    assert calls.put("k", "é").body == "é".encode()


def test_answers_become_results() -> None:
    """A GET's body, ETag, revision and deadline become an Entry; a PUT's ETag its revision."""
    answer = Answer(200, {"etag": '"5"', "x-tuco-revision": "9", "x-tuco-expires-at": "1767225630000"}, b"\xff\x00")
    assert calls.get("k").parse(answer) == calls.Entry("k", b"\xff\x00", 5, 9, 1767225630000)
    assert calls.put("k", b"v").parse(Answer(201, {"etag": '"10"', "x-tuco-revision": "10"}, b"")) == calls.Written(10)
    body = b'{"revision":4,"items":[{"key":"a","value":"aGk=","create_revision":1,"mod_revision":3,"version":2}],'
    body += b'"next_page_token":null}'
    page = calls.list_page("a").parse(Answer(200, {}, body))
    assert page == calls.Page(4, (calls.Item("a", b"hi", 1, 3, 2),), None)


def test_error_answers_become_the_classes_of_the_tree_with_their_details() -> None:
    """412 carries the current revision from the ETag, 410 the oldest revision, 404 the key; codes map to classes."""
    failed = calls.put("k", b"v", if_revision=3).parse
    with pytest.raises(PreconditionFailedError) as caught:
        failed(Answer(412, {"etag": '"8"'}, _error(412, "precondition_failed")))
    assert (caught.value.key, caught.value.current) == ("k", 8)
    with pytest.raises(PreconditionFailedError) as caught:
        failed(Answer(412, {}, _error(412, "precondition_failed")))
    assert caught.value.current == 0
    with pytest.raises(NoSuchKeyError) as missing:
        calls.get("gone").parse(Answer(404, {}, _error(404, "no_such_key")))
    assert missing.value.args == ("gone",)
    with pytest.raises(KeyTooLongError):
        failed(Answer(414, {}, _error(414, "key_too_long")))
    with pytest.raises(LeaseNotFoundError) as lease:
        calls.keepalive(12).parse(Answer(404, {}, _error(404, "no_such_lease")))
    assert lease.value.lease == 12
    error = calls.error_from(Answer(410, {}, _error(410, "history_compacted", extra=', "oldest_revision": 77')))
    assert isinstance(error, HistoryCompactedError) and error.oldest == 77


def test_a_store_behind_the_watch_cursor_is_a_revision_ahead_error_with_both_revisions() -> None:
    """409 revision_ahead stops a watch with the store's revision and the cursor's: the caller must re-sync."""
    cursor = WatchCursor(prefix="app/")
    answer = Answer(409, {}, _error(409, "revision_ahead", extra=', "revision": 5, "requested": 25'))
    with pytest.raises(RevisionAheadError) as caught:
        cursor.check(answer)
    assert (caught.value.revision, caught.value.requested, caught.value.status) == (5, 25, 409)
    with pytest.raises(RevisionAheadError):
        calls.wait("k", 26, 1.0).parse(answer)


def test_codes_without_a_class_keep_the_servers_code_and_status() -> None:
    """``starting`` is an UnavailableError and ``not_found`` an InvalidRequestError, each with the server's code."""
    starting = calls.error_from(Answer(503, {}, _error(503, "starting")))
    assert isinstance(starting, UnavailableError) and (starting.code, starting.status) == ("starting", 503)
    missing = calls.error_from(Answer(404, {}, _error(404, "not_found")))
    assert type(missing) is InvalidRequestError and (missing.code, missing.status) == ("not_found", 404)
    garbage = calls.error_from(Answer(502, {}, b"<html>bad gateway</html>"))
    assert (garbage.code, garbage.status, str(garbage)) == ("http_502", 502, "<html>bad gateway</html>")


def test_backoff_retries_idempotent_calls_and_never_a_sent_conditional_write() -> None:
    """Lost answers and 503s retry what is safe; a conditional write retries only if nothing was done."""
    backoff = Backoff(attempts=3, base=0.01, cap=0.05)
    plain, conditional = calls.put("k", b"v"), calls.put("k", b"v", if_absent=True)
    unavailable = Answer(503, {}, _error(503, "log_unavailable"))
    starting = Answer(503, {"retry-after": "1"}, _error(503, "starting"))
    assert backoff.delay(plain, 0, None, sent=True) is not None
    assert backoff.delay(plain, 0, unavailable, sent=True) is not None
    assert backoff.delay(plain, 2, unavailable, sent=True) is None  # out of attempts
    assert backoff.delay(conditional, 0, None, sent=True) is None
    assert backoff.delay(conditional, 0, unavailable, sent=True) is None
    assert backoff.delay(conditional, 0, None, sent=False) is not None  # never reached the server
    assert backoff.delay(conditional, 0, starting, sent=True) == 0.05  # Retry-After, capped
    conditional_delete = calls.delete("k", if_revision=3)
    assert backoff.delay(calls.delete("k"), 0, unavailable, sent=True) is not None
    assert backoff.delay(conditional_delete, 0, unavailable, sent=True) is None
    assert backoff.delay(conditional_delete, 0, None, sent=True) is None
    assert backoff.delay(conditional_delete, 0, starting, sent=True) == 0.05
    assert backoff.delay(plain, 0, Answer(201, {}, b""), sent=True) is None
    assert backoff.delay(calls.readiness(), 0, Answer(503, {}, b"{}"), sent=True) is None


def test_watch_cursor_parses_frames_and_resumes_after_the_last_id() -> None:
    """put/delete frames become events, progress and cancel move the cursor, and a reconnect sends Last-Event-ID."""
    cursor = WatchCursor(prefix="app/", start_revision=3)
    assert cursor.request() == ((("prefix", "app/"), ("start_revision", "3")), (("Accept", "text/event-stream"),))
    lines = [
        "retry: 1000",
        ": watching after revision 2",
        "",
        "id: 3",
        "event: put",
        'data: {"revision":3,"key":"app/a","value":"aGk=","mod_revision":3,"create_revision":3,"version":1}',
        "",
        "id: 4",
        "event: delete",
        'data: {"revision":4,"key":"app/a"}',
        "",
        "id: 9",
        "event: progress",
        'data: {"revision":9}',
        "",
    ]
    events = [event for line in lines if (event := cursor.feed(line)) is not None]
    assert events == [WatchEvent("put", 3, "app/a", b"hi", 3, 1), WatchEvent("delete", 4, "app/a")]
    assert cursor.last == 9
    for line in ("id: 11", "event: cancel", 'data: {"reason":"slow_consumer","resume_revision":12}', ""):
        assert cursor.feed(line) is None
    assert cursor.request()[1] == (("Accept", "text/event-stream"), ("Last-Event-ID", "11"))
    with pytest.raises(InvalidRequestError):
        WatchCursor(prefix="a", key="b")
    from_now = WatchCursor(key="k")
    assert from_now.feed(": watching after revision 41") is None
    assert from_now.request() == ((("key", "k"),), (("Accept", "text/event-stream"), ("Last-Event-ID", "41")))


def test_options_come_from_arguments_then_the_environment() -> None:
    """An argument wins over TUCO_URL/TUCO_TOKEN; a bad URL is a ConfigurationError; no token, no header."""
    env = {"TUCO_URL": "http://10.0.0.1:1/", "TUCO_TOKEN": "tuco_a_b"}
    assert Options.resolve(None, None, None, None, env).url == "http://10.0.0.1:1"
    assert Options.resolve("http://h:2", "t", None, None, env).headers() == {"Authorization": "Bearer t"}
    assert Options.resolve(None, None, None, None, {}).headers() == {}
    with pytest.raises(ConfigurationError):
        Options.resolve("h:2", None, None, None, {})
    with pytest.raises(ConfigurationError):
        Options.resolve(None, None, "/nonexistent/ca.pem", None, {})


def test_a_lease_listing_answer_becomes_summaries_and_the_next_after() -> None:
    """GET /v1/leases sends limit and after; its body becomes LeaseSummary items and the next page's ``after``."""
    call = calls.list_leases(2, 5)
    assert (call.method, call.path, call.params) == ("GET", "/v1/leases", (("limit", "2"), ("after", "5")))
    body = b'{"leases":[{"id":6,"ttl":30.0,"expires_at":1767225630000,"remaining":12.5,"key_count":2}],'
    body += b'"next_after":6}'
    assert call.parse(Answer(200, {}, body)) == ((calls.LeaseSummary(6, 30.0, 1767225630000, 12.5, 2),), 6)
    assert calls.list_leases().params == ()
