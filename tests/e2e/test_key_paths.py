"""Keys with slashes over real sockets on every front end (the native server, ASGI under uvicorn): by their path,
by %2F, through the Python client (which sends %2F) and the CLI, all naming one key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import httpx

from tuco.client import Client


def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as is (no client normalizes its path) and return the status and the body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tuco", *args],
        env={**os.environ, "TUCO_URL": url},
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_a_key_with_slashes_round_trips_by_path_by_2f_by_the_client_and_by_the_cli(
    frontend: tuple[str, str],
) -> None:
    """PUT /v1/key/a/b/c is read by %2F, by the client and by the CLI; what they write is read by the path."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=10) as http, Client(url) as client:
        assert http.put("/v1/key/a/b/c", content=b"by path").status_code == 201
        got = http.get("/v1/key/a%2Fb%2Fc")
        assert (got.status_code, got.content) == (200, b"by path")
        assert client.get("a/b/c").value == b"by path"
        cli = _cli(url, "get", "a/b/c")
        assert (cli.returncode, cli.stdout) == (0, b"by path")

        client.put("a/b/c", b"by client")
        assert http.get("/v1/key/a/b/c").content == b"by client"
        assert _cli(url, "put", "a/b/c", "by cli").returncode == 0
        assert http.get("/v1/key/a/b/c").content == b"by cli"
        assert client.get("a/b/c").value == b"by cli"

        listed = http.get("/v1/keys", params={"prefix": "a/", "keys_only": "true"}).json()
        assert [item["key"] for item in listed["items"]] == ["a/b/c"]
        assert http.delete("/v1/key/a/b/c").status_code == 200
        assert http.get("/v1/key/a%2Fb%2Fc").status_code == 404


def test_segments_that_proxies_rewrite_are_400_over_a_real_socket(frontend: tuple[str, str]) -> None:
    """A raw /v1/key/a/../b and /v1/key/a//b are 400 invalid_key; their escaped forms are the keys a/../b, a//b."""
    _, url = frontend
    host = urlsplit(url).netloc.encode()
    for path in (b"/v1/key/a/../b", b"/v1/key/a//b"):
        status, body = _raw(
            url, b"PUT " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv"
        )
        assert (status, json.loads(body)["error"]) == (400, "invalid_key"), path
    with Client(url) as client:
        client.put("a/../b", b"dots")
        client.put("a//b", b"slashes")
        assert (client.get("a/../b").value, client.get("a//b").value) == (b"dots", b"slashes")
    status, body = _raw(url, b"GET /v1/key/a/%2E%2E/b HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert (status, body) == (200, b"dots")
