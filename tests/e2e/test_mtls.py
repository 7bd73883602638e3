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
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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

    def custom(
        self,
        name: str,
        *,
        common_names: Sequence[str] = (),
        sans: Sequence[x509.GeneralName] = (),
        not_after: datetime.datetime | None = None,
    ) -> tuple[Path, Path]:
        """A client certificate the client CA signed with exactly these subject CNs and SANs: (cert, key)."""
        ca_key = serialization.load_pem_private_key(self.client_ca.private_key_pem.bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.client_ca.cert_pem.bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in common_names]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]  # trustme's CA key is EC
        cert_path = self._write(f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
        key_path = self._write(
            f"{name}.key",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        return cert_path, key_path

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
    """A SAN granted write on app/ writes there (no token), is 403 elsewhere; an ungranted one is 401; CNs work."""
    server = mtls_server(tuco, pki, tmp_path)
    admin_cert = pki.client("operator")
    with httpx.Client(base_url=server.url, verify=pki.context(admin_cert), timeout=10) as http:
        for identity in ("dns:svc-a.example", "cn:svc-c"):
            created = http.post(
                "/v1/tokens",
                json={"cert": identity, "grants": [{"prefix": "app/", "permission": "write"}]},
                headers=ADMIN,
            )
            assert created.status_code == 201 and created.json()["token"] is None
    service = pki.client("svc-a", common_name="svc-a")  # its SAN, dns:svc-a.example, not its CN, is its identity
    with httpx.Client(base_url=server.url, verify=pki.context(service), timeout=10) as http:
        assert http.put("/v1/key/app%2Fx", content=b"by cert").status_code == 201
        assert http.get("/v1/key/app%2Fx").content == b"by cert"
        assert http.put("/v1/key/other", content=b"no").status_code == 403
    by_cn = pki.custom("svc-c", common_names=["svc-c"])  # no SAN: its one CN is its identity
    with httpx.Client(base_url=server.url, verify=pki.context(by_cn), timeout=10) as http:
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
        [sys.executable, "-m", "tuco", "token", "create", "--cert", "dns:svc-d", "--grant", "d/=read", "--json"],
        env={**operator, "TUCO_TOKEN": BOOTSTRAP},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert granted.returncode == 0 and granted.stderr == "", granted.stderr
    answer = json.loads(granted.stdout)
    assert (answer["cert"], answer["token"], answer["grants"]) == (
        "dns:svc-d",
        None,
        [{"prefix": "d/", "permission": "read"}],
    )


def _legacy_admin_grant(data_dir: Path) -> None:
    """A log holding one token record as builds before identity kinds wrote it: admin for the bare name "admin"."""
    from tuco.core.codec import encode_event, encode_header
    from tuco.core.events import Event, EventType

    record = json.dumps({"description": "legacy", "grants": [["", "admin"]], "cert": "admin"}).encode()
    data_dir.mkdir(parents=True)
    (data_dir / "tuco.log").write_bytes(
        encode_header() + encode_event(Event(1, EventType.TOKEN_CREATE, "00000000000000aa", record))
    )


def test_certificate_identities_cannot_be_confused(tuco: StartTuco, pki: Pki, tmp_path: Path) -> None:
    """Several CNs are refused; a CN, an email SAN and a URI SAN that all say "admin" are three principals, and a
    SAN beats the CN; an old grant of the bare name "admin" still serves only a certificate whose one CN is admin."""
    _legacy_admin_grant(tmp_path / "data")
    server = mtls_server(tuco, pki, tmp_path)
    admin_by_cn = pki.custom("cn-admin", common_names=["admin"])
    refused = {
        "two CNs": pki.custom("two-cns", common_names=["admin", "svc-a"]),
        "email SAN admin": pki.custom("email-admin", sans=[x509.RFC822Name("admin")]),
        "URI SAN admin": pki.custom("uri-admin", sans=[x509.UniformResourceIdentifier("admin")]),
        "CN admin beside a SAN": pki.custom("cn-and-san", common_names=["admin"], sans=[x509.DNSName("svc-a")]),
    }
    for name, client in refused.items():
        with httpx.Client(base_url=server.url, verify=pki.context(client), timeout=10) as http:
            answer = http.put("/v1/key/other%2Fy", content=name.encode())
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
    with httpx.Client(base_url=server.url, verify=pki.context(admin_by_cn), timeout=10) as http:
        assert http.put("/v1/key/other%2Fx", content=b"admin by cn").status_code == 201
        listed = http.get("/v1/tokens").json()["tokens"]
        assert [(t["id"], t["cert"]) for t in listed] == [("00000000000000aa", "cn:admin")]
        bare = http.post("/v1/tokens", json={"cert": "admin", "grants": [{"prefix": "", "permission": "read"}]})
        assert (bare.status_code, bare.json()["error"]) == (400, "invalid_parameter")
        assert "dns:svc-a" in bare.json()["message"]
        mail = http.post(
            "/v1/tokens", json={"cert": "email:admin", "grants": [{"prefix": "mail/", "permission": "write"}]}
        )
        assert mail.status_code == 201, mail.text
    with httpx.Client(base_url=server.url, verify=pki.context(refused["email SAN admin"]), timeout=10) as http:
        assert http.put("/v1/key/mail%2Fx", content=b"by email:admin").status_code == 201
        assert http.put("/v1/key/other%2Fy", content=b"by email:admin").status_code == 403
    with httpx.Client(base_url=server.url, verify=pki.context(admin_by_cn), timeout=10) as http:
        assert http.get("/v1/key/other%2Fy").status_code == 404  # nothing was written by the impostors
    assert server.terminate() == 0
    denied = [e for e in server.events() if e.get("event") == "request_denied"]
    assert [(e["reason"], e["cert"]) for e in denied] == [
        ("ambiguous_certificate", None),
        ("missing", "email:admin"),
        ("missing", "uri:admin"),
        ("missing", "dns:svc-a"),
        ("no_grant", "email:admin"),
    ]


def _tls(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost", session=session)


def _exchange(tls: ssl.SSLSocket, method: str, path: str, body: bytes = b"", token: str | None = None) -> int | None:
    """Send one request on a kept-alive TLS connection; the answer's status, None if the connection failed."""
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    try:
        tls.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                return None
            data += chunk
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head_bytes.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            chunk = tls.recv(65536)
            if not chunk:
                return None
            rest += chunk
        return int(head_bytes.split(b" ", 2)[1])
    except (ssl.SSLError, OSError):
        return None


@pytest.mark.parametrize("auth", ["token", "none"])
def test_an_expired_client_certificate_stops_working_on_open_connections_and_streams(
    tuco: StartTuco, pki: Pki, tmp_path: Path, auth: str
) -> None:
    """Past its notAfter a certificate's kept-alive connection gets 401 and is closed, its watch ends before the
    next change, and no TLS session of it is resumed (none is, before or after), so a new connection is refused;
    with TUCO_AUTH=none too, where the certificate is the only credential."""
    server = tuco(
        **(secured(tmp_path) if auth == "token" else {"TUCO_AUTH": "none"}),
        TUCO_TLS_CERT_FILE=str(pki.cert),
        TUCO_TLS_KEY_FILE=str(pki.key),
        TUCO_TLS_CLIENT_CA_FILE=str(pki.client_ca_file),
    )
    not_after = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=9)
    short = pki.custom("short", sans=[x509.DNSName("short.example")], not_after=not_after)
    operator = pki.client("operator")
    if auth == "token":
        with httpx.Client(base_url=server.url, verify=pki.context(operator), timeout=10) as http:
            granted = http.post(
                "/v1/tokens",
                json={"cert": "dns:short.example", "grants": [{"prefix": "app/", "permission": "write"}]},
                headers=ADMIN,
            )
            assert granted.status_code == 201
    context = pki.context(short)
    kept = _tls(server.port, context)
    watch = _tls(server.port, context)
    try:
        assert _exchange(kept, "PUT", "/v1/key/app%2Fbefore", b"v") == 201
        again = _tls(server.port, context, kept.session)
        assert _exchange(again, "GET", "/v1/key/app%2Fbefore") == 200
        resumed_before_expiry = again.session_reused  # checked last: the expiry is the point
        again.close()
        watch.sendall(b"GET /v1/watch?prefix=app%2F HTTP/1.1\r\nHost: localhost\r\n\r\n")
        opening = watch.recv(65536)
        assert opening.startswith(b"HTTP/1.1 200"), opening
        assert time.time() < not_after.timestamp() - 0.5, "the machine was too slow to use the certificate in time"
        while time.time() < not_after.timestamp() - 1.0:  # kept busy: an idle connection would time out first
            assert _exchange(kept, "GET", "/v1/key/app%2Fbefore") == 200
            time.sleep(0.5)
        time.sleep(max(0.0, not_after.timestamp() + 0.3 - time.time()))
        assert _exchange(kept, "PUT", "/v1/key/app%2Fafter", b"v") == 401
        assert kept.recv(65536) == b""  # and the connection is closed
        with httpx.Client(base_url=server.url, verify=pki.context(operator), timeout=10) as http:
            assert http.put("/v1/key/app%2Flate", content=b"late", headers=ADMIN).status_code == 201
            assert http.get("/v1/key/app%2Fafter", headers=ADMIN).status_code == 404
        streamed = b""
        while chunk := watch.recv(65536):
            streamed += chunk
        assert b"app/late" not in streamed and streamed.endswith(b"0\r\n\r\n"), streamed
        assert not _handshakes(server.port, context, kept.session)  # a full handshake, refused: it has expired
        assert not resumed_before_expiry
    finally:
        kept.close()
        watch.close()
    assert server.terminate() == 0
    lapsed = [e for e in server.events() if e.get("reason") == "certificate_expired"]
    assert [(e["event"], e["cert"]) for e in lapsed] == [
        ("request_denied", "dns:short.example"),
        ("watch_ended", "dns:short.example"),
    ]


def _handshakes(port: int, context: ssl.SSLContext, session: ssl.SSLSession | None) -> bool:
    """Whether a new connection with this context (offering ``session``) gets a request answered at all."""
    try:
        with _tls(port, context, session) as tls:
            return _exchange(tls, "GET", "/healthz") is not None
    except (ssl.SSLError, OSError):
        return False


def test_certificate_rows_of_the_authorization_matrix(tuco: StartTuco, pki: Pki, tmp_path: Path) -> None:
    """Certificates as credentials: grants by identity, 401 for none or an ambiguous one, a bearer token taking
    precedence, leases owned by the certificate's identity (another's is 404)."""
    server = mtls_server(tuco, pki, tmp_path)
    certs = {
        "reader": pki.client("reader"),
        "writer": pki.client("writer"),
        "other": pki.client("other"),
        "ungranted": pki.client("nobody"),
        "two CNs": pki.custom("two", common_names=["writer.example", "reader.example"]),
    }
    with httpx.Client(base_url=server.url, verify=pki.context(certs["writer"]), timeout=10) as http:
        for identity, permission in (("reader", "read"), ("writer", "write"), ("other", "write")):
            body = {"cert": f"dns:{identity}.example", "grants": [{"prefix": "app/", "permission": permission}]}
            assert http.post("/v1/tokens", json=body, headers=ADMIN).status_code == 201
        reading = http.post("/v1/tokens", json={"grants": [{"prefix": "app/", "permission": "read"}]}, headers=ADMIN)
        bearer_reader = {"Authorization": f"Bearer {reading.json()['token']}"}
        assert http.put("/v1/key/app%2Fx", content=b"x", headers=ADMIN).status_code == 201
    leases: dict[str, int] = {}
    for owner in ("writer", "other"):
        with httpx.Client(base_url=server.url, verify=pki.context(certs[owner]), timeout=10) as http:
            leases[owner] = http.post("/v1/leases", json={"ttl": 60}).json()["id"]
    rows = {
        "get key": ("GET", "/v1/key/app%2Fx"),
        "put key": ("PUT", "/v1/key/app%2Fy"),
        "long poll": ("GET", "/v1/key/app%2Fx?wait_revision=1&timeout=0"),
        "grant lease": ("POST", "/v1/leases"),
        "keep own lease alive": ("POST", "/v1/leases/{own}/keepalive"),
        "keep another's lease alive": ("POST", "/v1/leases/{others}/keepalive"),
        "list tokens": ("GET", "/v1/tokens"),
    }
    expected = {  # reader, writer, other, ungranted, two CNs, writer's certificate with a read token
        "get key": (200, 200, 200, 401, 401, 200),
        "put key": (403, 201, 201, 401, 401, 403),
        "long poll": (200, 200, 200, 401, 401, 200),
        "grant lease": (403, 201, 201, 401, 401, 403),
        "keep own lease alive": (403, 200, 200, 401, 401, 403),
        "keep another's lease alive": (403, 404, 404, 401, 401, 403),
        "list tokens": (403, 403, 403, 401, 401, 403),
    }
    cases: list[tuple[str, tuple[Path, Path], dict[str, str]]] = [(name, certs[name], {}) for name in certs]
    cases.append(("token on a cert", certs["writer"], bearer_reader))
    wrong = {}
    for column, (case, cert, headers) in enumerate(cases):
        own = leases.get(case, 10**12)
        others = leases["other"] if case == "writer" else leases["writer"]
        with httpx.Client(base_url=server.url, verify=pki.context(cert), timeout=10) as http:
            for row, (method, path) in rows.items():
                content = b'{"ttl": 60}' if row == "grant lease" else b"v"
                answer = http.request(method, path.format(own=own, others=others), content=content, headers=headers)
                if answer.status_code != expected[row][column]:
                    wrong[(row, case)] = answer.status_code
    assert wrong == {}
