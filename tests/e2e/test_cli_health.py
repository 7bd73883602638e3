"""``tuco health``, the image's health check: exit 0 for a live (``--ready``: ready) server, else 1 and one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import trustme

from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]


def _health(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TUCO_")}
    return subprocess.run(
        [sys.executable, "-m", "tuco", "health", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_health_finds_the_server_from_the_same_settings_as_serve(tuco: StartTuco) -> None:
    """With the server's TUCO_HOST and TUCO_PORT (0.0.0.0 reached on loopback) both checks exit 0 silently."""
    port = free_port()
    tuco(TUCO_PORT=str(port))
    for host in ("127.0.0.1", "0.0.0.0"):
        for args in ((), ("--ready",)):
            result = _health(*args, TUCO_HOST=host, TUCO_PORT=str(port))
            assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_health_exits_1_with_one_line_when_nothing_answers() -> None:
    """No server on the port: exit 1 (unhealthy, as container health checks expect) and one line on stderr."""
    port = free_port()
    result = _health(TUCO_PORT=str(port))
    assert (result.returncode, result.stdout, result.stderr.count("\n")) == (1, "", 1)
    assert result.stderr.startswith(f"tuco: unhealthy: cannot reach http://127.0.0.1:{port}: ")


def test_health_exits_1_on_a_setting_serve_would_refuse() -> None:
    """A bad TUCO_PORT makes the check unhealthy in one line rather than a usage error or a traceback."""
    result = _health(TUCO_PORT="eighty")
    assert (result.returncode, result.stdout, result.stderr.count("\n")) == (1, "", 1)
    assert result.stderr.startswith("tuco: unhealthy: invalid configuration: TUCO_PORT: ")


def test_health_with_a_url_that_is_not_one() -> None:
    """A --url httpx cannot use is one unhealthy line, exit 1."""
    result = _health("--url", "not a url")
    assert (result.returncode, result.stderr.count("\n")) == (1, 1)
    assert result.stderr.startswith("tuco: unhealthy: cannot reach not a url")


def test_an_answer_other_than_200_is_unhealthy(tuco: StartTuco) -> None:
    """A server that answers the check with another status (here a 404 under a wrong base URL) is unhealthy."""
    server = tuco()
    result = _health("--ready", "--url", server.url + "/nothing-here")
    assert result.returncode == 1
    assert result.stderr.startswith("tuco: unhealthy: /readyz answered 404: ")


def test_health_over_tls_checks_the_local_server_with_or_without_its_ca(tuco: StartTuco, tmp_path: Path) -> None:
    """With TUCO_TLS_* set it speaks HTTPS: unverified by default (loopback, no secret sent), verified with --cacert."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    port = free_port()
    tls = {"TUCO_TLS_CERT_FILE": str(tmp_path / "cert.pem"), "TUCO_TLS_KEY_FILE": str(tmp_path / "key.pem")}
    tuco(TUCO_PORT=str(port), **tls)
    env = {"TUCO_PORT": str(port), **tls}
    assert _health(**env).returncode == 0
    assert _health("--cacert", str(tmp_path / "ca.pem"), **env).returncode == 0
    wrong = _health("--cacert", str(tmp_path / "other.pem"), **env)
    assert wrong.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.stderr
