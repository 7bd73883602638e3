"""The Lambda handlers answering API Gateway events of both payload formats against the real PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import quote

import pytest

from tests.fix_proxy import Proxy
from tests.serverless.conftest import MakeContainer
from tests.serverless.gateway import body_of, header, make_event
from tuco import serverless

pytestmark = pytest.mark.postgres


def _error(answer: dict[str, object]) -> str:
    return str(json.loads(body_of(answer))["error"])


def test_book_curl_session(containers: MakeContainer, fmt: str) -> None:
    """PUT twice, GET, PUT a new value, GET, then a method the API does not have gets 405, as on the server."""
    fn = containers()
    for _ in range(2):
        put = fn.invoke(make_event(fmt, "PUT", "/v1/key/key-a", b"Hello, key-value store!"))
        assert (put["statusCode"], body_of(put)) == (201, b"")
    got = fn.invoke(make_event(fmt, "GET", "/v1/key/key-a"))
    assert (got["statusCode"], body_of(got)) == (200, b"Hello, key-value store!")
    assert header(got, "content-type") == "application/octet-stream"
    assert fn.invoke(make_event(fmt, "PUT", "/v1/key/key-a", b"Hello, again, key-value store!"))["statusCode"] == 201
    assert body_of(fn.invoke(make_event(fmt, "GET", "/v1/key/key-a"))) == b"Hello, again, key-value store!"
    wrong = fn.invoke(make_event(fmt, "POST", "/v1/key/key-a", b"x"))
    assert wrong["statusCode"] == 405
    assert header(wrong, "allow") == "GET, HEAD, PUT, DELETE"
    assert json.loads(body_of(wrong)) == {
        "error": "method_not_allowed",
        "message": "allowed methods: GET, HEAD, PUT, DELETE",
    }
    assert fn.invoke(make_event(fmt, "DELETE", "/v1/key/key-a"))["statusCode"] == 200
    gone = fn.invoke(make_event(fmt, "GET", "/v1/key/key-a"))
    assert (gone["statusCode"], _error(gone)) == (404, "no_such_key")
    if fmt == "1.0":  # only multiValueHeaders: a gateway given both merges them (serverless-offline repeats each)
        assert gone["multiValueHeaders"]["content-type"] == ["application/json"]
        assert "headers" not in gone


def test_binary_values_round_trip_in_base64(containers: MakeContainer, fmt: str) -> None:
    """Every byte value goes in as a base64 body and comes back base64 with isBase64Encoded, byte for byte."""
    fn = containers()
    value = bytes(range(256)) * 3
    assert fn.invoke(make_event(fmt, "PUT", "/v1/key/bin", value, binary=True))["statusCode"] == 201
    got = fn.invoke(make_event(fmt, "GET", "/v1/key/bin"))
    assert got["isBase64Encoded"] is True
    assert body_of(got) == value
    head = fn.invoke(make_event(fmt, "HEAD", "/v1/key/bin"))
    assert (head["statusCode"], head["body"]) == (200, "")
    odd = "ключ/with space?"
    assert fn.invoke(make_event(fmt, "PUT", "/v1/key/" + quote(odd, safe=""), b"k"))["statusCode"] == 201
    listed = json.loads(body_of(fn.invoke(make_event(fmt, "GET", "/v1/keys"))))
    assert [item["key"] for item in listed["items"]] == ["bin", odd]


def test_cas_with_etags(containers: MakeContainer, fmt: str) -> None:
    """If-None-Match: * creates once; If-Match with the ETag writes; a stale ETag gets 412 with the current one."""
    fn = containers()
    created = fn.invoke(make_event(fmt, "PUT", "/v1/key/c", b"1", headers={"If-None-Match": "*"}))
    assert created["statusCode"] == 201
    tag = header(created, "etag")
    again = fn.invoke(make_event(fmt, "PUT", "/v1/key/c", b"x", headers={"If-None-Match": "*"}))
    assert (again["statusCode"], _error(again), header(again, "etag")) == (412, "precondition_failed", tag)
    swapped = fn.invoke(make_event(fmt, "PUT", "/v1/key/c", b"2", headers={"If-Match": str(tag)}))
    assert swapped["statusCode"] == 201
    stale = fn.invoke(make_event(fmt, "PUT", "/v1/key/c", b"3", headers={"If-Match": str(tag)}))
    assert (stale["statusCode"], header(stale, "etag")) == (412, header(swapped, "etag"))
    assert body_of(fn.invoke(make_event(fmt, "GET", "/v1/key/c", query="consistent=true"))) == b"2"


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "headers", "status", "code"),
    [
        ("GET", "/v1/key/absent", b"", "", {}, 404, "no_such_key"),
        ("GET", "/nowhere", b"", "", {}, 404, "not_found"),
        ("PATCH", "/v1/key/k", b"", "", {}, 405, "method_not_allowed"),
        ("PUT", "/v1/key/" + "k" * 1025, b"v", "", {}, 414, "key_too_long"),
        ("PUT", "/v1/key/", b"v", "", {}, 400, "invalid_key"),
        ("PUT", "/v1/key/k", b"v", "", {"If-Match": 'W/"1"'}, 400, "invalid_precondition"),
        ("PUT", "/v1/key/k", b"v", "ttl=forever", {}, 400, "invalid_parameter"),
        ("GET", "/v1/keys", b"", "page_token=garbage", {}, 400, "invalid_page_token"),
        ("PUT", "/v1/key/k", b"v", "lease=99", {}, 404, "no_such_lease"),
        ("GET", "/v1/watch", b"", "prefix=a", {}, 501, "streaming_unsupported"),
        ("PUT", "/v1/key/k", b"x" * 1025, "", {}, 413, "value_too_large"),
    ],
)
def test_every_error_is_json_with_the_servers_status(
    containers: MakeContainer,
    fmt: str,
    method: str,
    path: str,
    body: bytes,
    query: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    """Each client mistake gets the server's status and a JSON {error, message}, never a 500."""
    fn = containers(max_value_bytes=1024)
    answer = fn.invoke(make_event(fmt, method, path, body, query=query, headers=headers))
    assert (answer["statusCode"], _error(answer)) == (status, code)
    assert header(answer, "content-type") == "application/json"
    assert set(json.loads(body_of(answer))) >= {"error", "message"}


def test_a_body_marked_base64_that_is_not_is_a_400(containers: MakeContainer, fmt: str) -> None:
    """A gateway event whose base64 body does not decode is 400 invalid_body, and nothing is stored."""
    fn = containers()
    event = make_event(fmt, "PUT", "/v1/key/k", b"v", binary=True)
    event["body"] = "not base64!"
    answer = fn.invoke(event)
    assert (answer["statusCode"], _error(answer)) == (400, "invalid_body")
    assert fn.invoke(make_event(fmt, "GET", "/v1/key/k"))["statusCode"] == 404


def test_the_database_away_is_a_503(containers: MakeContainer, pg_proxy: Proxy, fmt: str) -> None:
    """Reads and writes with the database out of reach answer 503 log_unavailable in JSON, then recover."""
    fn = containers(pg_proxy.dsn, database_write_timeout_seconds=1.0)
    assert fn.invoke(make_event(fmt, "PUT", "/v1/key/k", b"v"))["statusCode"] == 201
    pg_proxy.stop()
    for method, body in (("GET", b""), ("PUT", b"w")):
        answer = fn.invoke(make_event(fmt, method, "/v1/key/k", body))
        assert (answer["statusCode"], _error(answer)) == (503, "log_unavailable")
    pg_proxy.start()
    assert body_of(fn.invoke(make_event(fmt, "GET", "/v1/key/k"))) in (b"v", b"w")


def test_per_method_functions_answer_their_method_only(containers: MakeContainer, fmt: str) -> None:
    """get_key, put_key and delete_key each answer their method; another method is 405, another path 404."""
    fn = containers()
    serverless._container = fn
    try:
        assert serverless.put_key(make_event(fmt, "PUT", "/v1/key/k", b"v"), None)["statusCode"] == 201
        assert body_of(serverless.get_key(make_event(fmt, "GET", "/v1/key/k"), None)) == b"v"
        refused = serverless.get_key(make_event(fmt, "DELETE", "/v1/key/k"), None)
        assert (refused["statusCode"], header(refused, "allow")) == (405, "GET, HEAD")
        assert serverless.put_key(make_event(fmt, "GET", "/v1/a/b"), None)["statusCode"] == 404
        assert serverless.delete_key(make_event(fmt, "DELETE", "/v1/key/k"), None)["statusCode"] == 200
        assert serverless.handler(make_event(fmt, "GET", "/v1/key/k"), None)["statusCode"] == 404
    finally:
        serverless._container = None


def test_a_key_with_slashes_round_trips_through_the_greedy_route_and_the_raw_path(
    containers: MakeContainer, fmt: str
) -> None:
    """PUT by /v1/key/{key+} (the gateway decodes a/b/c), GET by %2F, by the per-method get_key and, with no path
    parameter (a proxy route), by the raw path /v1/key/a/b/c: one key; a raw ../ segment is 400 there too."""
    fn = containers()
    assert fn.invoke(make_event(fmt, "PUT", "/v1/key/a/b/c", b"v"))["statusCode"] == 201
    assert body_of(fn.invoke(make_event(fmt, "GET", "/v1/key/a%2Fb%2Fc"))) == b"v"
    serverless._container = fn
    try:
        assert body_of(serverless.get_key(make_event(fmt, "GET", "/v1/key/a/b/c"), None)) == b"v"
    finally:
        serverless._container = None
    if fmt == "2.0":
        proxied = make_event(fmt, "GET", "/v1/key/a/b/c")
        proxied["pathParameters"] = None
        got = fn.invoke(proxied)
        assert (got["statusCode"], body_of(got)) == (200, b"v")
        dotted = make_event(fmt, "GET", "/v1/key/a/../b")
        dotted["pathParameters"] = None
        refused = fn.invoke(dotted)
        assert (refused["statusCode"], _error(refused)) == (400, "invalid_key")
    escaped = make_event(fmt, "PUT", "/v1/key/x%2F%2E%2E", b"dots")  # the gateway hands over "x/.."
    assert fn.invoke(escaped)["statusCode"] == 201
    assert body_of(fn.invoke(make_event(fmt, "GET", "/v1/key/x%2F%2E%2E"))) == b"dots"


def test_warm_invocations_reuse_the_pool_and_read_the_database(containers: MakeContainer, fmt: str) -> None:
    """One service and pool serve every invocation; without a staleness bound each read asks the database."""
    writer = containers()
    reader = containers()
    assert writer.invoke(make_event(fmt, "PUT", "/v1/key/k", b"1"))["statusCode"] == 201
    assert body_of(reader.invoke(make_event(fmt, "GET", "/v1/key/k"))) == b"1"
    api, pool = reader.api, reader.api.service.reads.reader._pool  # type: ignore[union-attr]
    assert writer.invoke(make_event(fmt, "PUT", "/v1/key/k", b"2"))["statusCode"] == 201
    assert body_of(reader.invoke(make_event(fmt, "GET", "/v1/key/k"))) == b"2"  # no feed, yet not stale
    assert reader.api is api and reader.api.service.reads.reader._pool is pool  # type: ignore[union-attr]
    assert reader.invocations == 2


def test_a_staleness_bound_lets_warm_reads_skip_the_database(containers: MakeContainer, fmt: str) -> None:
    """With TUCO_CACHE_MAX_STALENESS_SECONDS a key read again within the bound is answered from the cache."""
    writer = containers()
    reader = containers(cache_max_staleness_seconds=0.5)
    assert writer.invoke(make_event(fmt, "PUT", "/v1/key/k", b"1"))["statusCode"] == 201
    assert body_of(reader.invoke(make_event(fmt, "GET", "/v1/key/k"))) == b"1"
    reads = reader.api.service.reads.reader.reads  # type: ignore[union-attr]
    assert writer.invoke(make_event(fmt, "PUT", "/v1/key/k", b"2"))["statusCode"] == 201
    assert body_of(reader.invoke(make_event(fmt, "GET", "/v1/key/k"))) == b"1"  # within the bound: may be stale
    assert reader.api.service.reads.reader.reads == reads  # type: ignore[union-attr]
    consistent = reader.invoke(make_event(fmt, "GET", "/v1/key/k", query="consistent=true"))
    assert body_of(consistent) == b"2"
    time.sleep(0.6)
    assert body_of(reader.invoke(make_event(fmt, "GET", "/v1/key/k"))) == b"2"


def test_long_poll_answers_when_another_function_writes(containers: MakeContainer, fmt: str) -> None:
    """A long poll waits until another container writes the key, then answers its value; else times out."""
    poller = containers()
    writer = containers()
    put = writer.invoke(make_event(fmt, "PUT", "/v1/key/w", b"old"))
    revision = int(str(header(put, "x-tuco-revision")))
    timer = threading.Timer(0.7, lambda: writer.invoke(make_event(fmt, "PUT", "/v1/key/w", b"new")))
    timer.start()
    started = time.monotonic()
    answer = poller.invoke(make_event(fmt, "GET", "/v1/key/w", query=f"wait_revision={revision + 1}&timeout=10s"))
    timer.join()
    assert (answer["statusCode"], body_of(answer), header(answer, "x-tuco-wait")) == (200, b"new", "changed")
    assert 0.5 < time.monotonic() - started < 5
    started = time.monotonic()
    quiet = poller.invoke(make_event(fmt, "GET", "/v1/key/w", query=f"wait_revision={revision + 2}&timeout=1s"))
    assert (quiet["statusCode"], body_of(quiet), header(quiet, "x-tuco-wait")) == (200, b"new", "timeout")
    assert 0.9 < time.monotonic() - started < 4


def test_leases_and_ttls_through_the_function(containers: MakeContainer, fmt: str) -> None:
    """Grant, attach, show and revoke a lease across two containers; a ttl key is hidden once past its deadline."""
    one = containers()
    two = containers()
    granted = one.invoke(make_event(fmt, "POST", "/v1/leases", b'{"ttl": 60}'))
    assert granted["statusCode"] == 201
    lease = json.loads(body_of(granted))["id"]
    held = two.invoke(make_event(fmt, "PUT", "/v1/key/held", b"h", query=f"lease={lease}"))
    assert held["statusCode"] == 201
    shown = one.invoke(make_event(fmt, "GET", f"/v1/leases/{lease}"))
    assert (shown["statusCode"], json.loads(body_of(shown))["keys"]) == (200, ["held"])
    revoked = one.invoke(make_event(fmt, "DELETE", f"/v1/leases/{lease}"))
    assert (revoked["statusCode"], json.loads(body_of(revoked))["deleted_keys"]) == (200, 1)
    assert two.invoke(make_event(fmt, "GET", "/v1/key/held"))["statusCode"] == 404
    assert one.invoke(make_event(fmt, "PUT", "/v1/key/brief", b"b", query="ttl=200ms"))["statusCode"] == 201
    live = two.invoke(make_event(fmt, "GET", "/v1/key/brief"))
    assert live["statusCode"] == 200 and header(live, "x-tuco-expires-at") is not None
    time.sleep(0.3)
    assert two.invoke(make_event(fmt, "GET", "/v1/key/brief"))["statusCode"] == 404


def test_authorization_reaches_the_api_unchanged(containers: MakeContainer, fmt: str) -> None:
    """The Authorization header of the event is in the Request the API sees, byte for byte."""
    event = make_event(fmt, "GET", "/v1/key/k", headers={"Authorization": "Bearer tuco_abc.DEF"})
    request = serverless.request_of(event)
    assert request.header(b"authorization") == b"Bearer tuco_abc.DEF"


BOOTSTRAP = "bootstrap-0123456789abcdefghijklmnopqrstuvwxyz"


def test_a_token_revoked_through_one_function_is_refused_by_another_warm_one(
    containers: MakeContainer, fmt: str
) -> None:
    """With TUCO_AUTH=token, warm containers see tokens created and revoked elsewhere at their next request."""
    one = containers(auth="token", bootstrap_token=BOOTSTRAP)
    two = containers(auth="token", bootstrap_token=BOOTSTRAP)
    admin = {"Authorization": f"Bearer {BOOTSTRAP}"}
    assert two.invoke(make_event(fmt, "PUT", "/v1/key/a%2Fk", b"v", headers=admin))["statusCode"] == 201  # warm
    body = json.dumps({"description": "t", "grants": [{"prefix": "a/", "permission": "read"}]}).encode()
    created = one.invoke(make_event(fmt, "POST", "/v1/tokens", body, headers=admin))
    assert created["statusCode"] == 201
    token = json.loads(body_of(created))
    reader = {"Authorization": f"Bearer {token['token']}"}
    assert two.invoke(make_event(fmt, "GET", "/v1/key/a%2Fk", headers=reader))["statusCode"] == 200
    assert two.invoke(make_event(fmt, "GET", "/v1/key/b", headers=reader))["statusCode"] == 403
    revoked = one.invoke(make_event(fmt, "DELETE", f"/v1/tokens/{token['id']}", headers=admin))
    assert revoked["statusCode"] == 204
    refused = two.invoke(make_event(fmt, "GET", "/v1/key/a%2Fk", headers=reader))
    assert (refused["statusCode"], _error(refused)) == (401, "unauthorized")
