"""Mutual TLS on the native server: certificates from a trustme CA, refused at the handshake or served by grant."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme

from tests.e2e.process import TucoProcess
from tests.e2e.test_auth import ADMIN, secured
from tests.http.test_auth import BOOTSTRAP

StartTuco = Callable[..., TucoProcess]


class Pki:
    """The server's CA and certificate, the client CA, and client certificates written to files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.other_ca = trustme.CA()
        server = server_ca.issue_cert("127.0.0.1", "localhost")
        self.ca = self._write("ca.pem", server_ca.cert_pem.bytes())
        self.cert = self._write("server.pem", b"".join(blob.bytes() for blob in server.cert_chain_pems))
        self.key = self._write("server.key", server.private_key_pem.bytes())
        self.client_ca_file = self._write("client-ca.pem", self.client_ca.cert_pem.bytes())

    def _write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    def client(self, name: str, ca: trustme.CA | None = None, **options: object) -> tuple[Path, Path]:
        """A client certificate (identities as SANs; ``common_name`` if given) and its key: (cert, key)."""
        leaf = (ca or self.client_ca).issue_cert(f"{name}.example", **options)  # type: ignore[arg-type]
        cert = self._write(f"{name}.pem", b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key = self._write(f"{name}.key", leaf.private_key_pem.bytes())
        return cert, key

    def context(self, client: tuple[Path, Path] | None = None, *, tls12: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if client is not None:
            context.load_cert_chain(str(client[0]), str(client[1]))
        if tls12:  # the handshake itself then carries the server's verdict on the client certificate
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def mtls_server(tuco: StartTuco, pki: Pki, tmp_path: Path) -> TucoProcess:
    return tuco(
        **secured(tmp_path),
        TUCO_TLS_CERT_FILE=str(pki.cert),
        TUCO_TLS_KEY_FILE=str(pki.key),
        TUCO_TLS_CLIENT_CA_FILE=str(pki.client_ca_file),
    )


def handshake(port: int, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        if not tls.recv(1024):
            raise ConnectionError("closed")


def test_no_certificate_another_ca_or_an_expired_one_is_refused_at_the_handshake(
    tuco: StartTuco, pki: Pki, tmp_path: Path
) -> None:
    """Without a certificate, with one from another CA, or with an expired one, no request reaches tuco."""
    server = mtls_server(tuco, pki, tmp_path)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    cases = {
        "none": None,
        "other CA": pki.client("stranger", pki.other_ca),
        "expired": pki.client("old", not_before=past, not_after=past + datetime.timedelta(days=1)),
    }
    for name, client in cases.items():
        with pytest.raises(ssl.SSLError):
            handshake(server.port, pki.context(client, tls12=True))
        with (
            pytest.raises(httpx.TransportError),
            httpx.Client(base_url=server.url, verify=pki.context(client), timeout=10) as http,
        ):
            http.get("/healthz", headers=ADMIN)
        assert name  # every case refused
    handshake(server.port, pki.context(pki.client("good"), tls12=True))  # the CA's own certificate gets through
    assert server.terminate() == 0
    assert "request_denied" not in server.output()


def test_a_granted_certificate_is_served_with_its_grants_by_httpx_curl_and_the_cli(
    tuco: StartTuco, pki: Pki, tmp_path: Path
) -> None:
    """A CN granted write on app/ writes there (no token), is 403 elsewhere; an ungranted one is 401; SANs work."""
    server = mtls_server(tuco, pki, tmp_path)
    admin_cert = pki.client("operator")
    with httpx.Client(base_url=server.url, verify=pki.context(admin_cert), timeout=10) as http:
        for identity in ("svc-a", "svc-c.example"):
            created = http.post(
                "/v1/tokens",
                json={"cert": identity, "grants": [{"prefix": "app/", "permission": "write"}]},
                headers=ADMIN,
            )
            assert created.status_code == 201 and created.json()["token"] is None
    service = pki.client("svc-a", common_name="svc-a")
    with httpx.Client(base_url=server.url, verify=pki.context(service), timeout=10) as http:
        assert http.put("/v1/key/app%2Fx", content=b"by cert").status_code == 201
        assert http.get("/v1/key/app%2Fx").content == b"by cert"
        assert http.put("/v1/key/other", content=b"no").status_code == 403
    by_san = pki.client("svc-c")  # no CN: its first SAN, svc-c.example, is its identity
    with httpx.Client(base_url=server.url, verify=pki.context(by_san), timeout=10) as http:
        assert http.get("/v1/key/app%2Fx").status_code == 200
    with httpx.Client(base_url=server.url, verify=pki.context(pki.client("svc-b")), timeout=10) as http:
        assert http.get("/v1/key/app%2Fx").status_code == 401
    if shutil.which("curl") is not None:
        curl = subprocess.run(
            [
                "curl",
                "-sS",
                "--cacert",
                str(pki.ca),
                "--cert",
                str(service[0]),
                "--key",
                str(service[1]),
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PUT",
                "--data-binary",
                "curl",
                f"https://localhost:{server.port}/v1/key/app%2Fcurl",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (curl.returncode, curl.stdout) == (0, "201"), curl.stderr
    env = {
        **os.environ,
        "TUCO_URL": f"https://localhost:{server.port}",
        "TUCO_CA_FILE": str(pki.ca),
        "TUCO_CLIENT_CERT_FILE": str(service[0]),
        "TUCO_CLIENT_KEY_FILE": str(service[1]),
    }
    got = subprocess.run([sys.executable, "-m", "tuco", "get", "app/x"], env=env, capture_output=True, timeout=60)
    assert (got.returncode, got.stdout) == (0, b"by cert"), got.stderr
    operator = {**env, "TUCO_CLIENT_CERT_FILE": str(admin_cert[0]), "TUCO_CLIENT_KEY_FILE": str(admin_cert[1])}
    granted = subprocess.run(
        [sys.executable, "-m", "tuco", "token", "create", "--cert", "svc-d", "--grant", "d/=read", "--json"],
        env={**operator, "TUCO_TOKEN": BOOTSTRAP},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert granted.returncode == 0 and granted.stderr == "", granted.stderr
    answer = json.loads(granted.stdout)
    assert (answer["cert"], answer["token"], answer["grants"]) == (
        "svc-d",
        None,
        [{"prefix": "d/", "permission": "read"}],
    )
