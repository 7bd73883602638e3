"""The book's curl session, on both key paths and both front ends."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("prefix", ["/v1/key/", "/v1/"])
def test_book_curl_session(frontend: tuple[str, str], prefix: str) -> None:
    """PUT twice, GET, PUT a new value, GET, then a method the API does not have gets 405."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=10) as client:
        first = client.put(f"{prefix}key-a", content=b"Hello, key-value store!")
        assert (first.status_code, first.content) == (201, b"")
        again = client.put(f"{prefix}key-a", content=b"Hello, key-value store!")
        assert (again.status_code, again.content) == (201, b"")
        got = client.get(f"{prefix}key-a")
        assert (got.status_code, got.content) == (200, b"Hello, key-value store!")
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["content-length"] == "23"
        changed = client.put(f"{prefix}key-a", content=b"Hello, again, key-value store!")
        assert changed.status_code == 201
        got = client.get(f"{prefix}key-a")
        assert (got.status_code, got.content) == (200, b"Hello, again, key-value store!")
        wrong = client.post(f"{prefix}key-a", content=b"x")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET, HEAD, PUT, DELETE"
        assert wrong.json() == {"error": "method_not_allowed", "message": "allowed methods: GET, HEAD, PUT, DELETE"}


def test_delete_is_idempotent_and_get_after_delete_is_404(frontend: tuple[str, str]) -> None:
    """DELETE answers 200 whether or not the key exists, and the key is gone afterwards."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.put("/v1/key/gone", content=b"v").status_code == 201
        assert client.delete("/v1/key/gone").status_code == 200
        assert client.delete("/v1/key/gone").status_code == 200
        missing = client.get("/v1/key/gone")
        assert missing.status_code == 404
        assert missing.json()["error"] == "no_such_key"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/key/", 400, "invalid_key"),
        ("/v1/key/%FF%FE", 400, "invalid_key"),
        ("/v1/key/" + "k" * 1025, 414, "key_too_long"),
        ("/nowhere", 404, "not_found"),
    ],
)
def test_bad_keys_and_paths_are_client_errors(frontend: tuple[str, str], path: str, status: int, code: str) -> None:
    """Empty, undecodable and oversized keys and unknown paths get a JSON 4xx, never a 500."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=10) as client:
        response = client.put(path, content=b"v")
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"] == code
        assert set(response.json()) == {"error", "message"}


def test_health_endpoints(frontend: tuple[str, str]) -> None:
    """/healthz says alive and /readyz says ready once replay finished, both as small JSON."""
    name, url = frontend
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "alive"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert ready.json()["log"]["backend"] == ("postgres" if name.endswith("postgres") else "file")
