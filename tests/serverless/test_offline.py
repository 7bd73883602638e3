"""End to end through a local API Gateway: Serverless Framework v3 with serverless-offline 13, over real HTTP.

The set-up installs exactly ``deploy/serverless/offline/package-lock.json`` with ``npm ci`` (once per
lock, into ``~/.cache/tuco``); after that it runs offline. Skipped, saying why, where node and npm are missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.needs import command

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "deploy" / "serverless" / "offline"
FILES = ("package.json", "package-lock.json", "serverless.yml", "handler.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _installed() -> Path:
    """The service directory with its node_modules, installed from the lock file if not yet."""
    command("node", "Debian's nodejs, for serverless-offline")
    command("npm", "Debian's npm, for serverless-offline")
    digest = hashlib.sha256(b"".join((OFFLINE / name).read_bytes() for name in FILES)).hexdigest()[:16]
    where = Path.home() / ".cache" / "tuco" / f"serverless-offline-{digest}"
    if not (where / "node_modules" / ".bin" / "serverless").exists():
        where.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copy(OFFLINE / name, where / name)
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return where


@pytest.fixture
def gateway(pg_dsn: str) -> Iterator[str]:
    """serverless-offline serving this checkout's handlers on a free port; its base URL."""
    service = _installed()
    port, lambda_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "VIRTUAL_ENV": sys.prefix,  # serverless-offline runs python3 from here: this checkout's venv
        "TUCO_DATABASE_URL": pg_dsn,
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        "AWS_ACCESS_KEY_ID": "offline",
        "AWS_SECRET_ACCESS_KEY": "offline",
    }
    command = [str(service / "node_modules" / ".bin" / "serverless"), "offline", "start"]
    command += ["--httpPort", str(port), "--lambdaPort", str(lambda_port), "--host", "127.0.0.1"]
    log = (service / f"offline-{port}.log").open("wb")
    proc = subprocess.Popen(command, cwd=service, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"Server ready" not in (service / f"offline-{port}.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((service / f"offline-{port}.log").read_text()[-3000:])
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the python handler processes it spawned too
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
        (service / f"offline-{port}.log").unlink(missing_ok=True)


@pytest.mark.slow
def test_book_session_binary_values_and_errors_through_the_emulated_gateway(gateway: str) -> None:
    """The curl session, a binary value, CAS, 405 and a listing over HTTP through both payload formats."""
    with httpx.Client(base_url=gateway, timeout=30) as http:
        put = http.put("/v1/key/key-a", content=b"Hello, key-value store!")  # put_key, payload 2.0
        assert put.status_code == 201
        assert put.headers["etag"] == '"1"'
        got = http.get("/v1/key/key-a")  # get_key, payload 2.0
        assert (got.status_code, got.content) == (200, b"Hello, key-value store!")
        assert got.headers["content-type"] == "application/octet-stream"
        value = bytes(range(256)) * 4
        binary = http.put("/v1/key/bin", content=value, headers={"content-type": "application/octet-stream"})
        assert binary.status_code == 201
        assert http.get("/v1/key/bin").content == value
        stale = http.put("/v1/key/key-a", content=b"x", headers={"If-Match": '"99"'})
        assert (stale.status_code, stale.json()["error"], stale.headers["etag"]) == (412, "precondition_failed", '"1"')
        wrong = http.post("/v1/key/key-a", content=b"x")  # the whole-API function, payload 1.0
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET, HEAD, PUT, DELETE"  # once: 1.0 answers carry multiValueHeaders only
        assert wrong.json() == {"error": "method_not_allowed", "message": "allowed methods: GET, HEAD, PUT, DELETE"}
        listing = http.get("/v1/keys", params={"keys_only": "true"})
        assert listing.status_code == 200
        assert listing.headers["x-tuco-revision"] == "2"
        assert [item["key"] for item in listing.json()["items"]] == ["bin", "key-a"]
        assert http.get("/v1/watch").status_code == 501
        assert http.delete("/v1/key/key-a").status_code == 200  # delete_key, payload 2.0
        gone = http.get("/v1/key/key-a")
        assert (gone.status_code, gone.json()["error"]) == (404, "no_such_key")
        path = http.put("/v1/key/app/config", content=b"p")  # put_key through the greedy /v1/key/{key+}
        assert path.status_code == 201
        assert http.get("/v1/key/app%2Fconfig").content == b"p"  # get_key, the same key by %2F
        assert http.delete("/v1/key/app/config").status_code == 200
