"""Who changed what on the file log: each change's principal, moment and delete reason in the watch and the dump.

Across two tokens, the expirer, a lease revoke and a range delete, with authentication on; and ``anonymous``
with it off. A token's secret never reaches the log's bytes, the watch or the dump.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from tests.http.secured import FRONT_ENDS, secured_service, served_secured
from tests.http.test_auth import ADMIN, BOOTSTRAP, bearer
from tests.http.watching import SSE
from tuco.cli import main as cli
from tuco.log.file import FileTransactionLog
from tuco.service import Limits, Service


async def _token(client: httpx.AsyncClient) -> tuple[str, str]:
    """A new token writing under k/ and reading everything: its id and its secret."""
    body = {"grants": [{"prefix": "k/", "permission": "write"}, {"prefix": "", "permission": "read"}]}
    created = await client.post("/v1/tokens", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return str(created.json()["id"]), str(created.json()["token"])


def _dump(path: Path) -> list[dict[str, Any]]:
    """``tuco log dump --output json`` of ``path``, one object per line."""
    result = CliRunner().invoke(cli, ["log", "dump", "--output", "json", str(path)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def _file_service(path: Path) -> Service:
    """A secured service on a file log at ``path``."""
    return secured_service(FileTransactionLog(path))


@FRONT_ENDS
def test_each_change_names_its_principal_in_the_watch_and_the_dump(front_end: str, tmp_path: Path) -> None:
    """Tokens by id, the expirer's and a revoke's deletes by name, with reasons; no secret anywhere."""
    path = tmp_path / "tuco.log"
    secrets: list[str] = [BOOTSTRAP]
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        service = _file_service(path)
        async with served_secured(front_end, service) as client:
            a_id, a_secret = await _token(client)
            b_id, b_secret = await _token(client)
            secrets.extend([a_secret, b_secret])
            a, b = bearer(a_secret), bearer(b_secret)
            start = service.applied_revision
            async with client.stream("GET", f"/v1/watch?prefix=k/&start_revision={start}", headers=a) as stream:
                sse = SSE(stream)
                assert (await client.put("/v1/key/k%2F1", content=b"one", headers=a)).status_code == 201
                assert (await client.put("/v1/key/k%2F1", content=b"uno", headers=b)).status_code == 201
                assert (await client.put("/v1/key/k%2Ft?ttl=1ms", content=b"t", headers=b)).status_code == 201
                frames = await sse.frames(4, timeout=10)  # the 4th: the expirer's delete, whenever it comes
                granted = await client.post("/v1/leases", json={"ttl": 600}, headers=a)
                lease = granted.json()["id"]
                assert (await client.put(f"/v1/key/k%2Fl?lease={lease}", content=b"l", headers=a)).status_code == 201
                assert (await client.delete(f"/v1/leases/{lease}", headers=a)).status_code == 200
                assert (await client.delete("/v1/key/k%2F1", headers=b)).status_code == 200
                assert (await client.put("/v1/key/k%2Fr", content=b"r", headers=a)).status_code == 201
                assert (await client.delete("/v1/keys?prefix=k/", headers=a)).json()["deleted"] == 1
                frames += await sse.frames(5)
                seen.extend({"event": f.event, **f.json()} for f in frames)
                for secret in secrets:
                    assert secret not in sse.raw.decode()
        expected = [
            ("put", "k/1", a_id, None),
            ("put", "k/1", b_id, None),
            ("put", "k/t", b_id, None),
            ("delete", "k/t", "expirer", "expired"),
            ("put", "k/l", a_id, None),
            ("delete", "k/l", "lease-revoke", "lease_revoked"),
            ("delete", "k/1", b_id, "deleted"),
            ("put", "k/r", a_id, None),
            ("delete", "k/r", a_id, "range_delete"),
        ]
        assert [(f["event"], f["key"], f["by"], f.get("reason")) for f in seen] == expected
        dumped = [e for e in _dump(path) if e.get("key", "").startswith("k/")]
        assert [(e["type"].lower(), e["key"], e["by"], e.get("reason")) for e in dumped] == expected
        by_revision = {(e["sequence"], e["key"]): e["at"] for e in dumped}
        assert all(by_revision[(f["revision"], f["key"])] == f["at"] for f in seen)
        assert all(isinstance(e["at"], int) and e["at"] > 1_700_000_000_000 for e in dumped)
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data
        assert a_id.encode() in data

    asyncio.run(main())


def test_without_authentication_every_change_is_anonymous(tmp_path: Path) -> None:
    """With auth off a PUT and a DELETE are recorded as ``anonymous``, the delete with reason ``deleted``."""
    path = tmp_path / "tuco.log"

    async def main() -> None:
        service = Service(FileTransactionLog(path), Limits())
        async with served_secured("native", service) as client:
            assert (await client.put("/v1/key/x", content=b"1")).status_code == 201
            assert (await client.delete("/v1/key/x")).status_code == 200

    asyncio.run(main())
    dumped = _dump(path)
    assert [(e["type"], e["by"], e.get("reason")) for e in dumped] == [
        ("PUT", "anonymous", None),
        ("DELETE", "anonymous", "deleted"),
    ]


@FRONT_ENDS
def test_the_history_of_a_key_pages_newest_first_with_who_and_410_past_it(front_end: str, tmp_path: Path) -> None:
    """GET /v1/history/{key}: each change's principal, paged by before; read needed; 410 below the retained history."""

    async def main() -> None:
        service = secured_service(FileTransactionLog(tmp_path / "tuco.log"), history_bytes=4096)
        async with served_secured(front_end, service) as client:
            a_id, a_secret = await _token(client)
            b_id, b_secret = await _token(client)
            a, b = bearer(a_secret), bearer(b_secret)
            first = (await client.put("/v1/key/k%2Fh", content=b"1", headers=a)).headers["etag"].strip('"')
            second = (await client.put("/v1/key/k%2Fh", content=b"2", headers=b)).headers["etag"].strip('"')
            assert (await client.put("/v1/key/k%2Fother", content=b"x", headers=b)).status_code == 201
            assert (await client.delete("/v1/key/k%2Fh", headers=a)).status_code == 200
            page = (await client.get("/v1/history/k%2Fh?limit=2", headers=b)).json()
            changes = page["changes"]
            assert [(c["type"], c["by"], c.get("reason"), c.get("value")) for c in changes] == [
                ("delete", a_id, "deleted", None),
                ("put", b_id, None, "Mg=="),
            ]
            assert changes[1]["revision"] == int(second) and page["next_before"] == int(second)
            rest = (await client.get(f"/v1/history/k%2Fh?limit=2&before={second}", headers=b)).json()
            assert [(c["revision"], c["by"]) for c in rest["changes"]] == [(int(first), a_id)]
            assert rest["next_before"] is None
            assert a_secret not in str(page) + str(rest) and b_secret not in str(page) + str(rest)
            reader = await client.post(
                "/v1/tokens", json={"grants": [{"prefix": "z/", "permission": "read"}]}, headers=ADMIN
            )
            refused = await client.get("/v1/history/k%2Fh", headers=bearer(reader.json()["token"]))
            assert refused.status_code == 403
            by_query = await client.get("/v1/history?key=k%2Fh&limit=2", headers=b)
            assert by_query.json() == page
            refused = await client.get("/v1/history?key=k%2Fh", headers=bearer(reader.json()["token"]))
            assert refused.status_code == 403
            nameless = await client.get("/v1/history", headers=ADMIN)
            assert (nameless.status_code, nameless.json()["error"]) == (400, "invalid_parameter")
            bad = await client.get("/v1/history/k%2Fh?before=0", headers=a)
            assert (bad.status_code, bad.json()["error"]) == (400, "invalid_parameter")
            for n in range(200):  # more than the 4 KiB history holds
                assert (await client.put("/v1/key/k%2Ffill", content=b"%d" % n, headers=a)).status_code == 201
            gone = await client.get(f"/v1/history/k%2Fh?before={second}", headers=a)
            assert (gone.status_code, gone.json()["error"]) == (410, "history_compacted")

    asyncio.run(main())


def test_a_transactions_range_deletes_say_range_delete_unless_it_also_deletes_single_keys(tmp_path: Path) -> None:
    """A delete_prefix in POST /v1/txn is a range delete, as DELETE /v1/keys is; one origin per transaction, so
    a transaction with both kinds of delete says ``deleted`` for all of them."""
    path = tmp_path / "tuco.log"
    ranged = {"success": [{"put": {"key": "p/new", "value": "bg=="}}, {"delete_prefix": {"prefix": "r/"}}]}
    mixed = {"success": [{"delete": {"key": "s"}}, {"delete_prefix": {"prefix": "m/"}}]}

    async def main() -> None:
        service = Service(FileTransactionLog(path), Limits())
        async with served_secured("native", service) as client:
            for key in ("r/1", "r/2", "s", "m/1"):
                assert (await client.put(f"/v1/key/{key}", content=b"v")).status_code == 201
            for body in (ranged, mixed):
                answered = await client.post("/v1/txn", json=body)
                assert (answered.status_code, answered.json()["succeeded"]) == (200, True), answered.text

    asyncio.run(main())
    dumped = [(e["type"], e["key"], e.get("reason")) for e in _dump(path) if e["sequence"] > 4]
    assert dumped == [
        ("PUT", "p/new", None),
        ("DELETE", "r/1", "range_delete"),
        ("DELETE", "r/2", "range_delete"),
        ("DELETE", "s", "deleted"),
        ("DELETE", "m/1", "deleted"),
    ]
