"""POST /v1/txn and DELETE /v1/keys?prefix=, over both front ends, on a memory log with a test clock."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import httpx
import pytest

from tests.http.test_ttl import FRONTS, START, Clock, serve
from tests.http.watching import FRONT_ENDS, SSE, run_served
from tuco.service import Limits, Service


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def put(key: str, value: bytes, **extra: object) -> dict[str, object]:
    return {"put": {"key": key, "value": b64(value), **extra}}


@pytest.mark.parametrize("front", FRONTS)
def test_compare_and_swap_of_two_keys(front: str) -> None:
    """Compares on both mod_revisions choose the branch; both puts land at one revision, reads see them."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        assert (await client.put("/v1/key/a", content=b"10")).status_code == 201
        assert (await client.put("/v1/key/b", content=b"20")).status_code == 201
        body = {
            "compare": [
                {"key": "a", "target": "mod_revision", "op": "==", "value": 1},
                {"key": "b", "target": "mod_revision", "op": "==", "value": 2},
            ],
            "success": [put("a", b"5"), put("b", b"25"), {"get": {"key": "a"}}],
            "failure": [{"get": {"key": "a"}}, {"get": {"key": "nope"}}],
        }
        answer = await client.post("/v1/txn", json=body)
        assert answer.status_code == 200
        assert answer.headers["X-Tuco-Revision"] == "3"
        assert answer.json() == {
            "succeeded": True,
            "revision": 3,
            "results": [
                {"put": {"revision": 3}},
                {"put": {"revision": 3}},
                {
                    "get": {
                        "key": "a",
                        "value": b64(b"5"),
                        "create_revision": 1,
                        "mod_revision": 3,
                        "version": 2,
                        "found": True,
                    }
                },
            ],
        }
        again = await client.post("/v1/txn", json=body)
        assert again.json() == {
            "succeeded": False,
            "revision": 3,
            "results": [
                {
                    "get": {
                        "key": "a",
                        "value": b64(b"5"),
                        "create_revision": 1,
                        "mod_revision": 3,
                        "version": 2,
                        "found": True,
                    }
                },
                {"get": {"key": "nope", "found": False}},
            ],
        }
        assert service.applied_revision == 3  # a transaction that wrote nothing takes no revision
        read = await client.get("/v1/key/b")
        assert (read.content, read.headers["ETag"]) == (b"25", '"3"')

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_compare_targets_and_ops(front: str) -> None:
    """Each target and op is judged as documented: value bytes, revisions, version, exists; absent keys."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        await client.put("/v1/key/k", content=b"m")
        await client.put("/v1/key/k", content=b"m")

        async def holds(target: str, op: str, value: object, key: str = "k") -> bool:
            body = {"compare": [{"key": key, "target": target, "op": op, "value": value}]}
            answer = await client.post("/v1/txn", json=body)
            assert answer.status_code == 200, answer.text
            return bool(answer.json()["succeeded"])

        assert await holds("value", "==", b64(b"m"))
        assert await holds("value", ">", b64(b"a"))
        assert not await holds("value", "<", b64(b"a"))
        assert await holds("value", "!=", b64(b"x"))
        assert not await holds("value", "==", b64(b""), key="absent")
        assert await holds("version", "==", 2)
        assert await holds("create_revision", "==", 1)
        assert await holds("mod_revision", ">", 1)
        assert not await holds("mod_revision", "<", 2)
        assert await holds("exists", "==", True)
        assert await holds("exists", "==", False, key="absent")
        assert await holds("mod_revision", "==", 0, key="absent")
        assert await holds("version", "==", 0, key="absent")

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_delete_prefix_list_and_ttl_in_one_revision(front: str) -> None:
    """delete_prefix, delete, a put with a ttl and a bounded list all happen at one revision; the ttl expires."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        for key in ("tmp/1", "tmp/2", "tmp/3", "keep"):
            await client.put(f"/v1/key/{quote(key, safe='')}", content=key.encode())
        body = {
            "success": [
                {"delete_prefix": {"prefix": "tmp/"}},
                {"delete": {"key": "absent"}},
                put("short", b"s", ttl=2),
                {"list": {"prefix": "", "limit": 1}},
                {"list": {"prefix": "", "limit": 5}},
            ]
        }
        answer = await client.post("/v1/txn", json=body)
        assert answer.status_code == 200
        keep = {"key": "keep", "value": b64(b"keep"), "create_revision": 4, "mod_revision": 4, "version": 1}
        short = {"key": "short", "value": b64(b"s"), "create_revision": 5, "mod_revision": 5, "version": 1}
        assert answer.json() == {
            "succeeded": True,
            "revision": 5,
            "results": [
                {"delete_prefix": {"deleted": 3}},
                {"delete": {"deleted": 0}},
                {"put": {"revision": 5}},
                {"list": {"items": [keep], "more": True}},
                {"list": {"items": [keep, short], "more": False}},
            ],
        }
        listing = (await client.get("/v1/keys")).json()
        assert [item["key"] for item in listing["items"]] == ["keep", "short"]
        assert (await client.get("/v1/key/short")).headers["X-Tuco-Expires-At"] == str(START + 2000)
        old = (await client.get("/v1/keys?prefix=tmp/")).json()
        assert old["items"] == []

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_range_delete(front: str) -> None:
    """DELETE /v1/keys?prefix= deletes the keys under it at one revision; the empty prefix needs all=true."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        for key in ("a/1", "a/2", "b/1"):
            await client.put(f"/v1/key/{quote(key, safe='')}", content=b"x")
        answer = await client.delete("/v1/keys?prefix=a/")
        assert (answer.status_code, answer.json(), answer.headers["X-Tuco-Revision"]) == (
            200,
            {"deleted": 2, "revision": 4},
            "4",
        )
        nothing = await client.delete("/v1/keys?prefix=zzz/")
        assert nothing.json() == {"deleted": 0, "revision": 4}
        refused = await client.delete("/v1/keys")
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_parameter")
        assert service.applied_revision == 4
        everything = await client.delete("/v1/keys?all=true")
        assert everything.json() == {"deleted": 1, "revision": 5}
        assert (await client.get("/v1/keys")).json()["items"] == []

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_bad_transactions_are_400_and_change_nothing(front: str) -> None:
    """A malformed body, a key written twice, a put under a deleted range: 400 invalid_txn, nothing written."""

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        bad = [
            b"not json",
            b"[]",
            b'{"success": [{"put": {"key": "a"}}], "extra": 1}',
            b'{"success": [{"put": {"key": "a", "value": "%%%"}}]}',
            b'{"success": [{"put": {"key": "a"}}, {"delete": {"key": "a"}}]}',
            b'{"success": [{"delete_prefix": {"prefix": "p/"}}, {"put": {"key": "p/x"}}]}',
            b'{"success": [{"delete_prefix": {"prefix": "p/"}}, {"delete_prefix": {"prefix": "p/q"}}]}',
            b'{"success": [{"delete_prefix": {"prefix": ""}}]}',
            b'{"compare": [{"key": "a", "target": "size", "value": 1}]}',
            b'{"compare": [{"key": "a", "target": "version", "op": "<=", "value": 1}]}',
            b'{"compare": [{"key": "a", "target": "version", "value": "1"}]}',
            b'{"success": [{"list": {"prefix": "", "limit": 1001}}]}',
            b'{"success": [{"put": {"key": "a", "ttl": 1, "lease": 2}}]}',
            b'{"success": [{"frobnicate": {"key": "a"}}]}',
            b'{"success": [{"put": {"key": "\\ud800"}}]}',
            b'{"compare": [{"key": "\\udfff", "target": "exists", "value": true}]}',
            b'{"success": [{"put": {"key": "a", "val": "eA=="}}]}',  # a misspelt field stored "" once
            b'{"success": [{"delete": {"key": "a", "prefix": "b"}}]}',
            b'{"success": [{"list": {"prefix": "", "limt": 5}}]}',
            b'{"compare": [{"key": "a", "target": "version", "value": 1, "opp": ">"}]}',
        ]
        for body in bad:
            answer = await client.post("/v1/txn", content=body)
            assert (answer.status_code, answer.json()["error"]) == (400, "invalid_txn"), body
        lease = await client.post("/v1/txn", json={"success": [put("a", b"", lease=99)]})
        assert (lease.status_code, lease.json()["error"]) == (404, "no_such_lease")
        assert service.applied_revision == 0
        misspelt = await client.post("/v1/txn", content=b'{"success": [{"put": {"key": "a", "val": "eA=="}}]}')
        assert misspelt.json()["message"] == "success[0].put: unknown field 'val'; a put has key, value, ttl and lease"

    serve(front, check)


@pytest.mark.parametrize("front", FRONTS)
def test_caps_at_and_over(front: str) -> None:
    """At TUCO_MAX_TXN_OPS and TUCO_MAX_TXN_BYTES a transaction commits; one op or byte over: 413, nothing."""
    limits = Limits(max_txn_ops=4, max_txn_bytes=12)  # keys and values; a compare's integer counts 8

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        four = {"compare": [{"key": "a", "target": "version", "value": 0}], "success": [put(k, b"") for k in "bcd"]}
        five = {**four, "failure": [{"get": {"key": "e"}}]}
        over = await client.post("/v1/txn", json=five)
        assert (over.status_code, over.json()["error"]) == (413, "txn_ops_limit")
        assert "TUCO_MAX_TXN_OPS" in over.json()["message"]
        assert (await client.post("/v1/txn", json=four)).json()["revision"] == 1
        at = {"success": [put("123456", b"123456")]}  # 12 bytes
        thirteen = {"success": [put("123456", b"1234567")]}
        over = await client.post("/v1/txn", json=thirteen)
        assert (over.status_code, over.json()["error"]) == (413, "txn_bytes_limit")
        assert "TUCO_MAX_TXN_BYTES" in over.json()["message"]
        assert service.applied_revision == 1
        assert (await client.post("/v1/txn", json=at)).json()["revision"] == 2

    serve(front, check, limits=limits)


@FRONT_ENDS
def test_watchers_see_a_transaction_together(front_end: str) -> None:
    """A watch receives every event of a transaction under its prefix, each with the transaction's one revision."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await client.put("/v1/key/x%2F1", content=b"1")
        async with client.stream("GET", "/v1/watch", params={"prefix": "x/"}) as response:
            sse = SSE(response)
            await sse.frame()  # the opening retry
            body = {"success": [put("x/2", b"2"), {"delete": {"key": "x/1"}}, put("y", b"other"), put("x/3", b"3")]}
            assert (await client.post("/v1/txn", json=body)).json()["revision"] == 2
            frames = await sse.frames(3)
        assert [(f.event, f.id, f.json()["key"]) for f in frames] == [
            ("put", "2", "x/2"),
            ("delete", "2", "x/1"),
            ("put", "2", "x/3"),
        ]
        shown = frames[2].json()
        at = shown.pop("at")
        assert isinstance(at, int) and shown == {
            "revision": 2,
            "key": "x/3",
            "value": b64(b"3"),
            "mod_revision": 2,
            "create_revision": 2,
            "version": 1,
            "by": "anonymous",
        }
        assert (frames[1].json()["reason"], frames[1].json()["at"]) == ("deleted", at)  # one moment

    run_served(front_end, check)


@pytest.mark.parametrize("front", FRONTS)
def test_a_transaction_body_may_pass_the_value_limit_up_to_the_transaction_caps(front: str) -> None:
    """A transaction at TUCO_MAX_TXN_BYTES commits though its JSON is over TUCO_MAX_VALUE_BYTES; a body over what
    the caps allow is a 413 naming them, before it is read; a key's body still stops at the value's limit."""
    limits = Limits(max_value_bytes=100, max_txn_ops=10, max_txn_bytes=1000)
    assert limits.txn_body_bytes == 2 * 1000 + 256 * 10

    async def check(client: httpx.AsyncClient, service: Service, clock: Clock) -> None:
        at_cap = {"success": [put(f"k{i}", b"v" * 98) for i in range(10)]}  # 10 keys of 2 bytes + 10 values of 98
        body = json.dumps(at_cap).encode()
        assert 100 < len(body) <= limits.txn_body_bytes
        answer = await client.post("/v1/txn", content=body)
        assert (answer.status_code, answer.json()["succeeded"], answer.json()["revision"]) == (200, True, 1)
        huge = b'{"success": []' + b" " * limits.txn_body_bytes + b"}"
        over = await client.post("/v1/txn", content=huge)
        assert (over.status_code, over.json()) == (
            413,
            {
                "error": "txn_bytes_limit",
                "message": "the transaction's body is over the 4560-byte limit that TUCO_MAX_TXN_BYTES and "
                "TUCO_MAX_TXN_OPS allow: split it into smaller transactions, or raise TUCO_MAX_TXN_BYTES",
            },
        )
        assert service.applied_revision == 1
        big = await client.put("/v1/key/big", content=b"v" * 101)
        assert (big.status_code, big.json()["error"]) == (413, "value_too_large")

    serve(front, check, limits=limits)
