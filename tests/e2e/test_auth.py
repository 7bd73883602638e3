"""Users and permissions on the real ``tuco serve``: the matrix, restarts, the safe default, secrets at rest."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tests.http.test_auth import BOOTSTRAP, bearer, check_listing_shows_only_granted, run_matrix, secret_of
from tuco.log._compaction import compact_log

StartTuco = Callable[..., TucoProcess]
ADMIN = bearer(BOOTSTRAP)


def secured(tmp_path: Path, **env: str) -> dict[str, str]:
    """The environment of a server with tokens on, the bootstrap token in a file (as a container secret)."""
    secret = tmp_path / "bootstrap"
    secret.write_text(BOOTSTRAP + "\n")
    return {"TUCO_AUTH": "token", "TUCO_BOOTSTRAP_TOKEN_FILE": str(secret), **env}


def serve_once(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``tuco serve`` expecting it to refuse to start; its output."""
    full = {**os.environ, "TUCO_PORT": "0", "TUCO_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(
        [sys.executable, "-m", "tuco", "serve"], env=full, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_endpoint_answers_each_credential_with_its_exact_status_on_the_native_server(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """The whole matrix over real sockets; listings under a read grant show only its keys; no secret logged."""
    server = tuco(**secured(tmp_path))

    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            setup, wrong = await run_matrix(client)
            assert wrong == {}
            await check_listing_shows_only_granted(client, setup)
            admin = setup.headers["admin"]
            shown = [await client.get(path, headers=admin) for path in ("/metrics", "/readyz", "/v1/tokens")]
            shown += [await client.get("/v1/key/app%2Fx", headers=bearer(s + "x")) for s in setup.secrets]
            for answer in shown:
                assert not any(secret_of(secret) in answer.text for secret in setup.secrets)
            assert "tuco_tokens " in shown[0].text  # the count of tokens, nothing about them
            return setup.secrets

    issued = asyncio.run(main())
    assert server.terminate() == 0
    output = server.output()
    assert "request_denied" in output and "token_created" in output
    for token in issued:
        assert secret_of(token) not in output  # neither a secret nor the bootstrap token is ever logged
    log_bytes = (tmp_path / "data" / "tuco.log").read_bytes()
    for token in issued:
        assert secret_of(token).encode() not in log_bytes


def test_a_watch_under_a_read_grant_streams_only_its_prefix(tuco: StartTuco, tmp_path: Path) -> None:
    """A read token on app/ watching app/ gets app/ changes only; watching everything is 403."""
    server = tuco(**secured(tmp_path))
    with server.client() as http:
        created = http.post("/v1/tokens", json={"grants": [{"prefix": "app/", "permission": "read"}]}, headers=ADMIN)
        reader = bearer(created.json()["token"])
        assert http.get("/v1/watch", headers=reader).status_code == 403
        with http.stream("GET", "/v1/watch?prefix=app%2F", headers=reader) as stream:
            assert stream.status_code == 200
            assert http.put("/v1/key/other%2Fx", content=b"no", headers=ADMIN).status_code == 201
            assert http.put("/v1/key/app%2Fa", content=b"yes", headers=ADMIN).status_code == 201
            seen = []
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:])["key"])
                    break
        assert seen == ["app/a"]


def test_tokens_survive_a_restart_and_a_compaction_keeps_only_live_ones(tuco: StartTuco, tmp_path: Path) -> None:
    """After SIGTERM and start, tokens work and revoked ones stay refused; an offline compaction drops the revoked."""
    env = secured(tmp_path)
    server = tuco(**env)
    with server.client() as http:
        kept = http.post("/v1/tokens", json={"grants": [{"prefix": "a/", "permission": "write"}]}, headers=ADMIN)
        gone = http.post("/v1/tokens", json={"grants": [{"prefix": "a/", "permission": "write"}]}, headers=ADMIN)
        assert http.delete(f"/v1/tokens/{gone.json()['id']}", headers=ADMIN).status_code == 204
        assert http.put("/v1/key/a%2F1", content=b"1", headers=bearer(kept.json()["token"])).status_code == 201
    assert server.terminate() == 0
    for round in ("restart", "compacted"):
        if round == "compacted":
            report = compact_log(tmp_path / "data" / "tuco.log")
            assert report.events_after == 2  # the key a/1 and the live token, nothing revoked
        server = tuco(**env)
        with server.client() as http:
            assert http.get("/v1/key/a%2F1", headers=bearer(kept.json()["token"])).status_code == 200
            assert http.get("/v1/key/a%2F1", headers=bearer(gone.json()["token"])).status_code == 401
            listed = http.get("/v1/tokens", headers=ADMIN).json()["tokens"]
            assert [t["id"] for t in listed] == [kept.json()["id"]]
        assert server.terminate() == 0


def test_listening_beyond_loopback_without_authentication_is_refused_in_one_line(tmp_path: Path) -> None:
    """TUCO_HOST=0.0.0.0 with TUCO_AUTH unset exits 2 before binding, with one line naming both choices."""
    refused = serve_once(tmp_path, TUCO_HOST="0.0.0.0")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "TUCO_AUTH=token" in lines[0] and "TUCO_AUTH=none" in lines[0]
    assert refused.stdout == ""  # refused before anything is logged, let alone bound


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TUCO_AUTH": "token"}, "needs an admin token"),
        ({"TUCO_AUTH": "token", "TUCO_BOOTSTRAP_TOKEN": "hunter2hunter2"}, "at least 32"),
        ({"TUCO_AUTH": "token", "TUCO_BOOTSTRAP_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
        ({"TUCO_AUTH": "sometimes"}, "TUCO_AUTH"),
        ({"TUCO_TLS_CLIENT_CA_FILE": "/x.pem"}, "needs TUCO_TLS_CERT_FILE"),
    ],
)
def test_unusable_authentication_settings_exit_2_in_one_line_without_the_secret(
    tmp_path: Path, env: dict[str, str], fragment: str
) -> None:
    """No bootstrap token, a weak one, an unreadable file, a bad mode: one line, exit 2, the token never shown."""
    refused = serve_once(tmp_path, **env)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("tuco: ")
    assert refused.stdout == "" and "hunter2" not in refused.stderr


def test_authentication_none_serves_openly_and_warns(tuco: StartTuco) -> None:
    """TUCO_AUTH=none starts, logs authentication_disabled, and answers without a token."""
    server = tuco(TUCO_AUTH="none")
    assert server.wait_for("authentication_disabled")["level"] == "warning"
    with server.client() as http:
        assert http.put("/v1/key/k", content=b"v").status_code == 201


def test_the_bootstrap_token_is_in_no_process_listing_and_the_cli_carries_tokens(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """No command line holds a token; tuco token create/list/revoke work; 401 and 403 exit 6."""
    server = tuco(**secured(tmp_path))
    with open(f"/proc/{server.pid}/cmdline", "rb") as cmdline:
        assert BOOTSTRAP.encode() not in cmdline.read()
    cli = [sys.executable, "-m", "tuco"]
    env = {**os.environ, "TUCO_URL": server.url, "TUCO_TOKEN": BOOTSTRAP}
    created = subprocess.run(
        [*cli, "token", "create", "--grant", "app/=write", "--description", "ci", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    token_file = tmp_path / "token"
    token_file.write_text(token["token"] + "\n")
    writer = {**os.environ, "TUCO_URL": server.url, "TUCO_TOKEN_FILE": str(token_file)}
    put = subprocess.run([*cli, "put", "app/k", "v"], env=writer, capture_output=True, text=True, timeout=60)
    assert put.returncode == 0, put.stderr
    got = subprocess.run([*cli, "get", "app/k"], env=writer, capture_output=True, timeout=60)
    assert (got.returncode, got.stdout) == (0, b"v")
    refused = subprocess.run([*cli, "put", "other", "v"], env=writer, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 6 and "403 forbidden" in refused.stderr
    anonymous = subprocess.run(
        [*cli, "get", "app/k"], env={**os.environ, "TUCO_URL": server.url}, capture_output=True, text=True, timeout=60
    )
    assert (anonymous.returncode, anonymous.stderr.splitlines()) == (
        6,
        [
            "tuco: 401 unauthorized: authentication required: send Authorization: Bearer <token> with a valid token",
            "tuco: give the token with --token-file FILE (or TUCO_TOKEN_FILE, or TUCO_TOKEN)",
        ],
    )
    listed = subprocess.run([*cli, "token", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and token["id"] in listed.stdout and token["token"] not in listed.stdout
    revoked = subprocess.run(
        [*cli, "token", "revoke", token["id"]], env=env, capture_output=True, text=True, timeout=60
    )
    assert revoked.returncode == 0, revoked.stderr
    again = subprocess.run([*cli, "token", "revoke", token["id"]], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1


def test_a_metrics_token_from_the_cli_scrapes_the_native_server_and_reads_no_key(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """tuco token create --grant =metrics: its token gets /metrics 200 and a key 403 (the CLI exits 6)."""
    server = tuco(**secured(tmp_path))
    cli = [sys.executable, "-m", "tuco"]
    env = {**os.environ, "TUCO_URL": server.url, "TUCO_TOKEN": BOOTSTRAP}
    assert subprocess.run([*cli, "put", "app/config", "v"], env=env, capture_output=True, timeout=60).returncode == 0
    created = subprocess.run(
        [*cli, "token", "create", "--grant", "=metrics", "--description", "prometheus", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    assert token["grants"] == [{"prefix": "", "permission": "metrics"}]
    with server.client() as http:
        scraped = http.get("/metrics", headers=bearer(token["token"]))
        assert scraped.status_code == 200 and "tuco_ready 1.0" in scraped.text
    scraper = {**os.environ, "TUCO_URL": server.url, "TUCO_TOKEN": token["token"]}
    refused = subprocess.run([*cli, "get", "app/config"], env=scraper, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 6
    assert "the request needs read on app/config; the token has metrics" in refused.stderr


def test_an_open_watch_ends_when_its_token_is_revoked(tuco: StartTuco, tmp_path: Path) -> None:
    """A stream opened with a token stops at its next frame after the revocation (a heartbeat bounds the wait)."""
    server = tuco(**secured(tmp_path, TUCO_WATCH_HEARTBEAT_SECONDS="0.5"))
    with server.client() as http:
        created = http.post("/v1/tokens", json={"grants": [{"prefix": "app/", "permission": "read"}]}, headers=ADMIN)
        reader = bearer(created.json()["token"])
        with http.stream("GET", "/v1/watch?prefix=app%2F", headers=reader) as stream:
            lines = stream.iter_lines()
            assert http.put("/v1/key/app%2Fa", content=b"1", headers=ADMIN).status_code == 201
            assert any(line.startswith("data: ") for line in (next(lines) for _ in range(6)))
            assert http.delete(f"/v1/tokens/{created.json()['id']}", headers=ADMIN).status_code == 204
            assert http.put("/v1/key/app%2Fb", content=b"secret after revocation", headers=ADMIN).status_code == 201
            rest = list(lines)  # the stream ends: iteration stops instead of waiting forever
        assert not any("app/b" in line for line in rest)
    assert server.wait_for("watch_ended")["token_id"] == created.json()["id"]


def test_uvicorn_serving_tuco_asgi_enforces_the_same_rules(tmp_path: Path) -> None:
    """Under uvicorn over real sockets, TUCO_AUTH=token answers 401, 403 and 200 as tuco serve does."""
    from tests.e2e.conftest import free_port

    port = free_port()
    env = {**os.environ, "TUCO_DATA_DIR": str(tmp_path / "data"), "TUCO_LOG_LEVEL": "warning", **secured(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tuco.asgi:create_app", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(300):
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise AssertionError("uvicorn exited during start-up")
                time.sleep(0.05)
            assert http.get("/v1/key/k").status_code == 401
            created = http.post("/v1/tokens", json={"grants": [{"prefix": "a/", "permission": "write"}]}, headers=ADMIN)
            writer = bearer(created.json()["token"])
            assert http.put("/v1/key/a%2F1", content=b"1", headers=writer).status_code == 201
            assert http.get("/v1/key/a%2F1", headers=writer).content == b"1"
            assert http.put("/v1/key/b", content=b"1", headers=writer).status_code == 403
            assert http.get("/readyz").json() == {"ready": True}
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_revocation_answers_204_without_content_length(tuco: StartTuco, tmp_path: Path) -> None:
    """RFC 9110 §8.6: a 204 carries no Content-Length; the connection stays usable for the next request."""
    server = tuco(**secured(tmp_path))
    with server.client() as http:
        created = http.post("/v1/tokens", json={"grants": [{"prefix": "a/", "permission": "read"}]}, headers=ADMIN)
        token_id = created.json()["id"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"DELETE /v1/tokens/{token_id} HTTP/1.1\r\nHost: t\r\nAuthorization: {ADMIN['Authorization']}\r\n\r\n"
            "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        )
        received = b""
        while b'{"status":"alive"}' not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"content-length" not in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
