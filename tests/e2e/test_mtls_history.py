"""Who changed what with client certificates: a change made over mutual TLS names the certificate's identity."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.process import TucoProcess
from tests.e2e.test_auth import ADMIN
from tests.e2e.test_cli import _tuco
from tests.e2e.test_mtls import Pki, mtls_server, pki

StartTuco = Callable[..., TucoProcess]

__all__ = ["pki"]  # the fixture, used by name


def test_a_certificates_changes_name_its_identity_in_the_history_and_the_dump(
    tuco: StartTuco, pki: Pki, tmp_path: Path
) -> None:
    """A PUT and a DELETE over mTLS are by dns:svc-a.example (its SAN) in GET /v1/history and tuco log dump."""
    server = mtls_server(tuco, pki, tmp_path)
    with httpx.Client(base_url=server.url, verify=pki.context(pki.client("operator")), timeout=10) as http:
        created = http.post(
            "/v1/tokens",
            json={"cert": "dns:svc-a.example", "grants": [{"prefix": "app/", "permission": "write"}]},
            headers=ADMIN,
        )
        assert created.status_code == 201
    with httpx.Client(base_url=server.url, verify=pki.context(pki.client("svc-a")), timeout=10) as http:
        assert http.put("/v1/key/app%2Fx", content=b"by cert").status_code == 201
        assert http.delete("/v1/key/app%2Fx").status_code == 200
        shown = http.get("/v1/history/app%2Fx").json()["changes"]
    assert [(c["type"], c["by"], c.get("reason")) for c in shown] == [
        ("delete", "dns:svc-a.example", "deleted"),
        ("put", "dns:svc-a.example", None),
    ]
    assert server.terminate() == 0
    logs = list(tmp_path.rglob("tuco.log"))
    assert len(logs) == 1
    dumped = _tuco("log", "dump", "--output", "json", str(logs[0]))
    events = [json.loads(line) for line in dumped.stdout.splitlines()]
    assert [(e["type"], e["by"]) for e in events if e.get("key") == "app/x"] == [
        ("PUT", "dns:svc-a.example"),
        ("DELETE", "dns:svc-a.example"),
    ]
    assert [e["at"] for e in events if e.get("key") == "app/x"] == [c["at"] for c in reversed(shown)]
