"""Who changed what, on both backends: tokens, a certificate, the expirer and a lease revoke, over real mTLS.

Each change's principal and delete reason are the same in the watch, the history
and what the log keeps (``tuco log dump`` of the file log; the rows of
PostgreSQL's ``tuco_events``), and no token's secret is in any of those bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.e2e.process import TucoProcess
from tests.e2e.test_auth import ADMIN, secured
from tests.e2e.test_cli import _tuco
from tests.e2e.test_mtls import Pki, pki
from tests.http.test_auth import BOOTSTRAP

StartTuco = Callable[..., TucoProcess]

__all__ = ["pki"]  # the fixture, used by name

_EXPECTED = [  # (type, key, by, reason) in revision order; "A", "B": the tokens' ids
    ("put", "k/1", "A", None),
    ("put", "k/1", "B", None),
    ("put", "k/t", "B", None),
    ("delete", "k/t", "expirer", "expired"),
    ("put", "k/l", "A", None),
    ("delete", "k/l", "lease-revoke", "lease_revoked"),
    ("put", "k/c", "dns:svc-a.example", None),
    ("delete", "k/c", "dns:svc-a.example", "deleted"),
    ("delete", "k/1", "B", "deleted"),
    ("put", "k/r", "A", None),
    ("delete", "k/r", "A", "range_delete"),
]


def _wait_for_delete(http: httpx.Client, key: str, headers: dict[str, str]) -> None:
    """Wait (bounded) until the key's newest change is a delete: the expirer's round has run."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        changes = http.get(f"/v1/history/{key.replace('/', '%2F')}", headers=headers).json()["changes"]
        if changes and changes[0]["type"] == "delete":
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} was never deleted by the expirer")


def _watch(http: httpx.Client, start: int, count: int, headers: dict[str, str]) -> tuple[list[dict[str, Any]], bytes]:
    """The first ``count`` events of a watch of k/ from ``start``, and the stream's raw bytes."""
    events: list[dict[str, Any]] = []
    raw = b""
    with http.stream("GET", f"/v1/watch?prefix=k/&start_revision={start}", headers=headers) as stream:
        kind = ""
        for line in stream.iter_lines():
            raw += line.encode() + b"\n"
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: ") and kind in ("put", "delete"):
                events.append({"event": kind, **json.loads(line[len("data: ") :])})
                if len(events) == count:
                    break
    return events, raw


async def _pg_rows(dsn: str) -> list[tuple[int, int, bytes, str | None, int | None, bytes]]:
    """PostgreSQL's record of the changes: sequence, type, key, origin_by, origin_reason, value."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT sequence, type, key, origin_by, origin_reason, value FROM tuco_events ORDER BY sequence"
        )
    finally:
        await conn.close()
    return [(r[0], r[1], bytes(r[2]), r[3], r[4], bytes(r[5])) for r in rows]


def test_each_change_names_its_principal_in_the_watch_the_history_and_the_log(
    tuco: StartTuco, pki: Pki, tmp_path: Path, backend: dict[str, str]
) -> None:
    """Exact principals and reasons in all three places on both backends; no secret in any of their bytes."""
    server = tuco(
        **secured(tmp_path),
        **backend,
        TUCO_TLS_CERT_FILE=str(pki.cert),
        TUCO_TLS_KEY_FILE=str(pki.key),
        TUCO_TLS_CLIENT_CA_FILE=str(pki.client_ca_file),
    )
    operator = pki.context(pki.client("operator"))
    with httpx.Client(base_url=server.url, verify=operator, timeout=10) as http:
        made = {}
        secrets = [BOOTSTRAP]
        for name in ("A", "B"):
            grants = [{"prefix": "k/", "permission": "write"}, {"prefix": "", "permission": "read"}]
            created = http.post("/v1/tokens", json={"grants": grants, "description": f"token {name}"}, headers=ADMIN)
            assert created.status_code == 201, created.text
            made[name] = created.json()
            secrets.append(made[name]["token"])
        cert = {"cert": "dns:svc-a.example", "grants": [{"prefix": "k/", "permission": "write"}]}
        assert http.post("/v1/tokens", json=cert, headers=ADMIN).status_code == 201
        a = {"Authorization": f"Bearer {made['A']['token']}"}
        b = {"Authorization": f"Bearer {made['B']['token']}"}
        start = int(http.get("/v1/keys?prefix=k/", headers=a).json()["revision"]) + 1
        assert http.put("/v1/key/k%2F1", content=b"one", headers=a).status_code == 201
        assert http.put("/v1/key/k%2F1", content=b"uno", headers=b).status_code == 201
        assert http.put("/v1/key/k%2Ft?ttl=1ms", content=b"t", headers=b).status_code == 201
        _wait_for_delete(http, "k/t", a)
        lease = http.post("/v1/leases", json={"ttl": 600}, headers=a).json()["id"]
        assert http.put(f"/v1/key/k%2Fl?lease={lease}", content=b"l", headers=a).status_code == 201
        assert http.delete(f"/v1/leases/{lease}", headers=a).status_code == 200
        with httpx.Client(base_url=server.url, verify=pki.context(pki.client("svc-a")), timeout=10) as svc:
            assert svc.put("/v1/key/k%2Fc", content=b"by cert").status_code == 201
            assert svc.delete("/v1/key/k%2Fc").status_code == 200
        assert http.delete("/v1/key/k%2F1", headers=b).status_code == 200
        assert http.put("/v1/key/k%2Fr", content=b"r", headers=a).status_code == 201
        assert http.delete("/v1/keys?prefix=k/", headers=a).json()["deleted"] == 1
        ids = {"A": made["A"]["id"], "B": made["B"]["id"]}
        expected = [(t, k, ids.get(by, by), reason) for t, k, by, reason in _EXPECTED]

        seen, raw = _watch(http, start, len(expected), a)
        assert [(e["event"], e["key"], e["by"], e.get("reason")) for e in seen] == expected
        at = {(e["revision"], e["key"]): e["at"] for e in seen}
        assert all(isinstance(t, int) and t > 1_700_000_000_000 for t in at.values())

        histories: dict[str, list[dict[str, Any]]] = {}
        for key in ("k/1", "k/t", "k/l", "k/c", "k/r"):
            answer = http.get(f"/v1/history/{key.replace('/', '%2F')}", headers=a)
            raw += answer.content
            histories[key] = answer.json()["changes"]
        from_history = sorted(
            (c["revision"], c["type"], key, c["by"], c.get("reason"), c["at"])
            for key, changes in histories.items()
            for c in changes
        )
        assert [(t, k, by, reason) for _, t, k, by, reason, _ in from_history] == expected
        assert all(at[(revision, k)] == moment for revision, _, k, _, _, moment in from_history)

    for secret in secrets:
        assert secret.encode() not in raw
    if backend:
        rows = asyncio.run(_pg_rows(backend["TUCO_DATABASE_URL"]))
        # the range delete is one transaction row (type 9, key ''), its origin the whole transaction's
        assert _kept(rows, start) == [(t, k, by, r) for t, k, by, r in expected[:-1]] + [("txn", "", ids["A"], 4)]
        stored = b"".join(r[2] + r[5] + (r[3] or "").encode() for r in rows)
    else:
        assert server.terminate() == 0
        logs = list(tmp_path.rglob("tuco.log"))
        assert len(logs) == 1
        dumped = _tuco("log", "dump", "--output", "json", str(logs[0])).stdout
        events = [json.loads(line) for line in dumped.splitlines()]
        mine = [e for e in events if e.get("key", "").startswith("k/")]
        assert [(e["type"].lower(), e["key"], e["by"], e.get("reason")) for e in mine] == expected
        assert [e["at"] for e in mine] == [at[(e["sequence"], e["key"])] for e in mine]
        stored = logs[0].read_bytes() + dumped
    for secret in secrets:
        assert secret.encode() not in stored


_REASON_NAMES = {1: "deleted", 2: "expired", 3: "lease_revoked"}


def _kept(rows: list[tuple[int, int, bytes, str | None, int | None, bytes]], start: int) -> list[tuple[Any, ...]]:
    """The changes PostgreSQL kept from ``start`` on: (put/delete, key, by, reason) and ("txn", "", by, reason number).

    Lease records (types 4-6) are left out.
    """
    kept: list[tuple[Any, ...]] = []
    for sequence, type_, key, by, reason, _ in rows:
        if sequence < start:
            continue
        if type_ == 1:
            kept.append(("put", key.decode(), by, None))
        elif type_ == 2:
            kept.append(("delete", key.decode(), by, _REASON_NAMES[reason or 1]))
        elif type_ == 9:
            kept.append(("txn", "", by, reason))
    return kept
