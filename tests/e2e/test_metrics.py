"""/metrics as Prometheus reads it, the access log and X-Request-Id, on a real ``tuco serve``."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]
KEY = "/v1/key/{key}"


def _scrape(client: httpx.Client) -> dict[str, tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]]:
    """``family name -> (type, {(sample name, sorted labels): value})``, parsed by prometheus-client's own parser."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    parsed = {}
    for family in text_string_to_metric_families(answer.text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        parsed[family.name] = (family.type, samples)
    return parsed


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
ROUTE_LABELS = ("method", "route", "status")


def _series(
    samples: Samples, name: str, labels: tuple[str, ...] = ROUTE_LABELS, **only: str
) -> dict[tuple[str, ...], float]:
    """The values of one sample name whose labels include ``only``, keyed by the values of ``labels``."""
    found = {}
    for (sample, pairs), value in samples.items():
        named = dict(pairs)
        if sample == name and all(named.get(k) == v for k, v in only.items()):
            found[tuple(named[label] for label in labels)] = value
    return found


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_requests_are_counted_by_method_route_and_status_with_a_latency_histogram(tuco: StartTuco) -> None:
    """Each answer is counted once under its route pattern (never the raw path); the histogram's counts agree."""
    server = tuco()
    with server.client() as client:
        assert client.put("/v1/key/a", content=b"1").status_code == 201
        assert client.put("/v1/key/a", content=b"2").status_code == 201
        assert client.get("/v1/key/a").status_code == 200
        assert client.get("/v1/key/missing").status_code == 404
        assert client.delete("/v1/key/a").status_code == 200
        assert client.post("/v1/key/a").status_code == 405
        assert client.get("/v1/keys").status_code == 200
        assert client.get("/v1/alias").status_code == 404
        assert client.get("/nothing/here").status_code == 404
        assert client.get("/healthz").status_code == 200
        assert b" 400 " in _raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
        families = _scrape(client)
    kind, samples = families["tuco_http_requests"]
    assert kind == "counter"
    assert _series(samples, "tuco_http_requests_total") == {
        ("DELETE", KEY, "200"): 1.0,
        ("GET", "/healthz", "200"): 1.0,
        ("GET", "/v1/keys", "200"): 1.0,
        ("GET", "/v1/{key}", "404"): 1.0,
        ("GET", KEY, "200"): 1.0,
        ("GET", KEY, "404"): 1.0,
        ("GET", "none", "404"): 1.0,
        ("POST", KEY, "405"): 1.0,
        ("PUT", KEY, "201"): 2.0,
    }
    kind, histogram = families["tuco_http_request_duration_seconds"]
    assert kind == "histogram"
    counts = _series(histogram, "tuco_http_request_duration_seconds_count")
    assert counts == _series(samples, "tuco_http_requests_total")
    assert _series(histogram, "tuco_http_request_duration_seconds_bucket", le="+Inf") == counts
    under_10s = _series(histogram, "tuco_http_request_duration_seconds_bucket", le="10.0")
    assert under_10s == counts
    sums = _series(histogram, "tuco_http_request_duration_seconds_sum")
    assert all(0 < v < 5 for v in sums.values()), sums
    kind, refused = families["tuco_http_requests_refused"]
    assert (kind, _series(refused, "tuco_http_requests_refused_total", ("status",))) == ("counter", {("400",): 1.0})


def test_the_file_log_reports_batch_sizes_commit_and_sync_times_and_no_lag(tuco: StartTuco) -> None:
    """Durable mode: one sync per committed batch; the batch sizes add up to the writes; a single writer has no lag."""
    server = tuco()
    with server.client() as client:
        for n in range(5):
            assert client.put(f"/v1/key/k{n}", content=b"v").status_code == 201
        assert client.delete("/v1/key/k0").status_code == 200
        families = _scrape(client)
    kind, batches = families["tuco_log_commit_batch_size"]
    assert kind == "histogram"
    assert batches[("tuco_log_commit_batch_size_sum", ())] == 6.0
    committed = batches[("tuco_log_commit_batch_size_count", ())]
    assert 1 <= committed <= 6
    assert batches[("tuco_log_commit_batch_size_bucket", (("le", "+Inf"),))] == committed
    kind, commits = families["tuco_log_commit_duration_seconds"]
    assert (kind, commits[("tuco_log_commit_duration_seconds_count", ())]) == ("histogram", committed)
    kind, syncs = families["tuco_log_sync_duration_seconds"]
    assert (kind, syncs[("tuco_log_sync_duration_seconds_count", ())]) == ("histogram", committed)
    assert 0 < syncs[("tuco_log_sync_duration_seconds_sum", ())] < commits[("tuco_log_commit_duration_seconds_sum", ())]
    assert families["tuco_log_compactions"] == ("counter", {("tuco_log_compactions_total", ()): 0.0})
    assert families["tuco_replication_lag_events"] == ("gauge", {("tuco_replication_lag_events", ()): 0.0})
    assert families["tuco_replication_lag_seconds"] == ("gauge", {("tuco_replication_lag_seconds", ()): 0.0})
    assert families["tuco_keys"] == ("gauge", {("tuco_keys", ()): 4.0})
    assert families["tuco_keys_expired"] == ("counter", {("tuco_keys_expired_total", ()): 0.0})


@pytest.mark.postgres
def test_the_postgres_log_reports_commits_and_lag_and_no_file_syncs(tuco: StartTuco, pg_dsn: str) -> None:
    """On PostgreSQL the commit histograms count database transactions; there is no file to sync."""
    server = tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn)
    with server.client() as client:
        for n in range(3):
            assert client.put(f"/v1/key/k{n}", content=b"v").status_code == 201
        families = _scrape(client)
    _, batches = families["tuco_log_commit_batch_size"]
    assert batches[("tuco_log_commit_batch_size_sum", ())] == 3.0
    _, commits = families["tuco_log_commit_duration_seconds"]
    assert commits[("tuco_log_commit_duration_seconds_count", ())] == batches[("tuco_log_commit_batch_size_count", ())]
    assert "tuco_log_sync_duration_seconds" not in families
    assert families["tuco_replication_lag_events"] == ("gauge", {("tuco_replication_lag_events", ()): 0.0})


def test_an_open_watch_is_counted_while_it_streams(tuco: StartTuco) -> None:
    """``tuco_watchers`` is 1 while a watch stream is open, and the stream's 200 is counted when it starts."""
    server = tuco()
    with server.client() as client, client.stream("GET", "/v1/watch", params={"prefix": "a"}) as watching:
        assert watching.status_code == 200
        families = _scrape(client)
    assert families["tuco_watchers"] == ("gauge", {("tuco_watchers", ()): 1.0})
    _, samples = families["tuco_http_requests"]
    assert _series(samples, "tuco_http_requests_total") == {("GET", "/v1/watch", "200"): 1.0}


def test_the_access_log_gives_every_answer_a_line_and_an_id_that_the_response_echoes(tuco: StartTuco) -> None:
    """TUCO_ACCESS_LOG=true: a client's usable X-Request-Id is kept, others get a minted one; each is logged once."""
    server = tuco(TUCO_ACCESS_LOG="true")
    with server.client() as client:
        given = client.get("/v1/key/nope", headers={"X-Request-Id": "req-42"})
        minted = client.put("/v1/key/k", content=b"v")
        too_long = client.get("/v1/key/k", headers={"X-Request-Id": "x" * 129})
        spaced = client.get("/healthz", headers={"X-Request-Id": "has space"})
    assert (given.status_code, given.headers["x-request-id"]) == (404, "req-42")
    ids = [minted.headers["x-request-id"], too_long.headers["x-request-id"], spaced.headers["x-request-id"]]
    prefix = ids[0].rsplit("-", 1)[0]
    assert len(prefix) == 8 and all(i.startswith(prefix + "-") for i in ids) and len(set(ids)) == 3
    deadline = time.monotonic() + 10
    while len(lines := [e for e in server.events() if e.get("event") == "access"]) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)  # the lines reach us through the server's stdout pipe, one by one
    assert [(e["method"], e["path"], e["route"], e["status"], e["request_id"]) for e in lines] == [
        ("GET", "/v1/key/nope", KEY, 404, "req-42"),
        ("PUT", "/v1/key/k", KEY, 201, ids[0]),
        ("GET", "/v1/key/k", KEY, 200, ids[1]),
        ("GET", "/healthz", "/healthz", 200, ids[2]),
    ]
    assert all(isinstance(e["duration_ms"], float) and e["client"].startswith("127.0.0.1:") for e in lines)


def test_without_the_access_log_a_clients_request_id_is_echoed_and_none_is_minted(tuco: StartTuco) -> None:
    """The default: no access lines; a sent X-Request-Id comes back on reads and writes alike; none is invented."""
    server = tuco()
    with server.client() as client:
        read = client.get("/v1/key/nope", headers={"X-Request-Id": "abc"})
        write = client.put("/v1/key/k", content=b"v", headers={"X-Request-Id": "def"})
        plain = client.get("/v1/key/k")
        injected = client.get("/v1/key/k", headers={"X-Request-Id": "a\x7fb"})
    assert (read.headers["x-request-id"], write.headers["x-request-id"]) == ("abc", "def")
    assert "x-request-id" not in plain.headers and "x-request-id" not in injected.headers
    assert [e for e in server.events() if e.get("event") == "access"] == []


@pytest.mark.postgres
def test_a_cache_replica_counts_its_hits_misses_and_evictions(tuco: StartTuco, pg_dsn: str) -> None:
    """TUCO_STATE=cache: the first read of a key goes to the database, the second is a hit; absent keys always miss."""
    server = tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn, TUCO_STATE="cache")
    with server.client() as client:
        assert client.put("/v1/key/k", content=b"v").status_code == 201
        assert client.get("/v1/key/k").content == b"v"
        assert client.get("/v1/key/k").content == b"v"
        assert client.get("/v1/key/absent").status_code == 404
        families = _scrape(client)
    assert families["tuco_cache_hits"] == ("counter", {("tuco_cache_hits_total", ()): 1.0})
    assert families["tuco_cache_misses"] == ("counter", {("tuco_cache_misses_total", ()): 2.0})
    assert families["tuco_cache_evictions"] == ("counter", {("tuco_cache_evictions_total", ()): 0.0})


def test_every_front_end_and_backend_counts_its_answers(frontend: tuple[str, str]) -> None:
    """Native (file and PostgreSQL) and uvicorn with tuco.asgi: the same requests give the same counts and ids."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.put("/v1/key/a", content=b"1").status_code == 201
        echoed = client.get("/v1/key/a", headers={"X-Request-Id": "front-1"})
        assert (echoed.status_code, echoed.headers["x-request-id"]) == (200, "front-1")
        assert client.get("/v1/key/b").status_code == 404
        families = _scrape(client)
    _, samples = families["tuco_http_requests"]
    assert _series(samples, "tuco_http_requests_total") == {
        ("PUT", KEY, "201"): 1.0,
        ("GET", KEY, "200"): 1.0,
        ("GET", KEY, "404"): 1.0,
    }
    _, batches = families["tuco_log_commit_batch_size"]
    assert batches[("tuco_log_commit_batch_size_sum", ())] == 1.0


def test_a_request_id_of_raw_non_ascii_bytes_is_neither_echoed_nor_logged_and_the_answer_is_normal(
    tuco: StartTuco,
) -> None:
    """A hostile X-Request-Id (bytes 0x80-0xff, sent raw) gets a minted id instead; the access line is valid JSON."""
    server = tuco(TUCO_ACCESS_LOG="true")
    answer = _raw(
        server.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: \xff\xfe\x80\r\nConnection: close\r\n\r\n"
    )
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 OK"
    echoed = [line for line in head if line.lower().startswith(b"x-request-id: ")]
    assert len(echoed) == 1 and b"\xff" not in echoed[0]
    line = server.wait_for("access")
    assert line["request_id"] == echoed[0].split(b": ", 1)[1].decode() and line["status"] == 200


def test_5xx_answers_are_counted_like_any_other(tuco: StartTuco, tmp_path: Path) -> None:
    """A 503 over the watcher cap, a write refused by a failed log and /readyz's 503 each count under their route."""
    data = tmp_path / "data"
    server = tuco(data_dir=data, TUCO_WATCH_MAX_WATCHERS="1")
    with server.client() as client:
        assert client.put("/v1/key/a", content=b"1").status_code == 201
        with client.stream("GET", "/v1/watch") as stream:
            assert stream.status_code == 200
            assert client.get("/v1/watch").status_code == 503
        (data / "tuco.log").unlink()  # the log is gone: writes stop, readiness goes
        deadline = time.monotonic() + 20
        while (ready := client.get("/readyz")).status_code != 503:
            assert time.monotonic() < deadline, "the server did not notice its log was gone"
            time.sleep(0.05)
        assert client.put("/v1/key/b", content=b"2").status_code == 503
        counted = _series(_scrape(client)["tuco_http_requests"][1], "tuco_http_requests_total")
    assert ready.json()["error"] == "log_failed"
    assert counted[("GET", "/v1/watch", "503")] == 1.0
    assert counted[("PUT", KEY, "503")] == 1.0
    assert counted[("GET", "/readyz", "503")] == 1.0
    assert counted[("GET", "/v1/watch", "200")] == 1.0 and counted[("PUT", KEY, "201")] == 1.0
