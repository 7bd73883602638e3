"""HTTPS with a real CA (trustme): httpx and curl verify the chain; bad files stop the start-up."""

from __future__ import annotations

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
from tests.needs import command

StartTuco = Callable[..., TucoProcess]


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost: (ca, cert chain, key)."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    return ca_file, cert_file, key_file


def test_https_round_trip_verified_by_httpx(tuco: StartTuco, certificates: tuple[Path, Path, Path]) -> None:
    """PUT then GET over HTTPS, with the chain verified against the test CA."""
    ca, cert, key = certificates
    server = tuco(TUCO_TLS_CERT_FILE=str(cert), TUCO_TLS_KEY_FILE=str(key))
    assert server.url.startswith("https://")
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as http:
        assert http.put("/v1/key/secure", content=b"over tls").status_code == 201
        got = http.get("/v1/key/secure")
        assert (got.status_code, got.content) == (200, b"over tls")
        assert got.extensions["http_version"] == b"HTTP/1.1"


def test_https_verified_by_curl(tuco: StartTuco, certificates: tuple[Path, Path, Path]) -> None:
    """curl with --cacert (never --insecure) stores and reads a value."""
    command("curl", "Debian's curl")
    ca, cert, key = certificates
    server = tuco(TUCO_TLS_CERT_FILE=str(cert), TUCO_TLS_KEY_FILE=str(key))
    url = f"https://localhost:{server.port}/v1/key/curl"
    put = subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            str(ca),
            "-X",
            "PUT",
            "--data-binary",
            "from curl",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ],
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert put.stdout == b"201"
    get = subprocess.run(["curl", "-sS", "--cacert", str(ca), url], capture_output=True, check=True, timeout=30)
    assert get.stdout == b"from curl"


def test_untrusted_client_is_refused(tuco: StartTuco, certificates: tuple[Path, Path, Path]) -> None:
    """A client without the test CA fails certificate verification (not a dead server); trusted ones are served."""
    ca, cert, key = certificates
    server = tuco(TUCO_TLS_CERT_FILE=str(cert), TUCO_TLS_KEY_FILE=str(key))
    untrusting = ssl.create_default_context()  # the system's CAs, which never signed the test certificate
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError) as refused,
    ):
        untrusting.wrap_socket(sock, server_hostname="127.0.0.1")
    assert refused.value.verify_message == "unable to get local issuer certificate"
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as http:
        assert http.get("/healthz").status_code == 200


def test_plain_http_to_the_tls_port_fails_cleanly(tuco: StartTuco, certificates: tuple[Path, Path, Path]) -> None:
    """Plain HTTP gets no HTTP answer, and the server keeps serving HTTPS afterwards."""
    ca, cert, key = certificates
    server = tuco(TUCO_TLS_CERT_FILE=str(cert), TUCO_TLS_KEY_FILE=str(key))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert received[:1] in (b"", b"\x15"), received  # nothing, or a TLS alert record: never an HTTP answer
    with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as http:
        assert http.get("/healthz").status_code == 200


def _serve_expecting_failure(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "tuco", "serve"],
        env={**os.environ, "TUCO_PORT": "0", "TUCO_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("problem", ["missing cert", "missing key", "mismatched key", "key without cert"])
def test_bad_tls_files_exit_non_zero_with_one_line(
    tmp_path: Path, certificates: tuple[Path, Path, Path], problem: str
) -> None:
    """Missing, mismatched or half-configured TLS files stop the start-up with exit 2 and one stderr line."""
    _, cert, key = certificates
    other_key = tmp_path / "other.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other_key))
    env = {
        "missing cert": {"TUCO_TLS_CERT_FILE": str(tmp_path / "nope.pem"), "TUCO_TLS_KEY_FILE": str(key)},
        "missing key": {"TUCO_TLS_CERT_FILE": str(cert), "TUCO_TLS_KEY_FILE": str(tmp_path / "nope.pem")},
        "mismatched key": {"TUCO_TLS_CERT_FILE": str(cert), "TUCO_TLS_KEY_FILE": str(other_key)},
        "key without cert": {"TUCO_TLS_KEY_FILE": str(key)},
    }[problem]
    result = _serve_expecting_failure(env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tuco: ")
    assert "Traceback" not in result.stdout.decode()
