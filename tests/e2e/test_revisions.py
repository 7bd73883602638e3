"""Revisions, conditional writes and listings over real sockets, on every front end and backend."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]


def test_etags_revisions_and_conditions(frontend: tuple[str, str]) -> None:
    """ETag and X-Tuco-Revision on every key answer; If-Match / If-None-Match decide writes; 412 names the tag."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=10) as client:
        created = client.put(key_path("c/1"), content=b"a", headers={"If-None-Match": "*"})
        assert (created.status_code, created.headers["etag"], created.headers["x-tuco-revision"]) == (201, '"1"', "1")
        again = client.put(key_path("c/1"), content=b"b", headers={"If-None-Match": "*"})
        assert (again.status_code, again.headers["etag"], again.json()["error"]) == (412, '"1"', "precondition_failed")
        got = client.get(key_path("c/1"))
        assert (got.content, got.headers["etag"], got.headers["x-tuco-revision"]) == (b"a", '"1"', "1")
        head = client.head("/v1/c%2F1")
        assert (head.status_code, head.headers["etag"], head.content) == (200, '"1"', b"")
        updated = client.put(key_path("c/1"), content=b"b", headers={"If-Match": '"1"'})
        assert (updated.status_code, updated.headers["etag"]) == (201, '"2"')
        stale = client.delete(key_path("c/1"), headers={"If-Match": '"1"'})
        assert (stale.status_code, stale.headers["etag"], stale.headers["x-tuco-revision"]) == (412, '"2"', "2")
        bad = client.put(key_path("c/1"), content=b"x", headers={"If-Match": 'W/"2"'})
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_precondition")
        deleted = client.delete(key_path("c/1"), headers={"If-Match": "*"})
        assert (deleted.status_code, deleted.headers["x-tuco-revision"]) == (200, "3")
        assert "etag" not in deleted.headers
        absent = client.delete(key_path("c/1"), headers={"If-Match": "*"})
        assert (absent.status_code, absent.headers["x-tuco-revision"]) == (412, "3")
        assert "etag" not in absent.headers


@pytest.mark.parametrize("tag", ['"9223372036854775808"', '"18446744073709551616"', '"1' + "0" * 40 + '"'])
def test_a_revision_no_store_can_reach_is_a_400_on_every_backend(frontend: tuple[str, str], tag: str) -> None:
    """If-Match beyond 2^63 - 1 is 400 invalid_precondition before the log is asked, never 503; the largest is 412."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.put(key_path("k"), content=b"v").status_code == 201
        for method, params in (("PUT", {}), ("PUT", {"ttl": "30s"}), ("DELETE", {})):
            refused = client.request(method, key_path("k"), params=params, content=b"w", headers={"If-Match": tag})
            assert (refused.status_code, refused.json()["error"]) == (400, "invalid_precondition"), refused.text
            assert refused.json()["message"] == "a revision is at most 9223372036854775807: no key can be at this one"
        largest = client.put(key_path("k"), content=b"w", headers={"If-Match": '"9223372036854775807"'})
        assert (largest.status_code, largest.headers["etag"], largest.json()["error"]) == (
            412,
            '"1"',
            "precondition_failed",
        )
        got = client.get(key_path("k"))
        assert (got.status_code, got.content, got.headers["x-tuco-revision"]) == (200, b"v", "1")
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()["ready"]) == (200, True)


def test_listing_pages_reserved_names_and_the_alias(frontend: tuple[str, str]) -> None:
    """GET /v1/keys pages a prefix at one revision; /v1/key/keys is a key; /v1/tokens is a reserved 404."""
    _, url = frontend
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(5):
            assert client.put(key_path(f"p/{n}"), content=b"%d" % n).status_code == 201
        assert client.put("/v1/key/keys", content=b"named keys").status_code == 201
        assert client.put("/v1/alias", content=b"via alias").status_code == 201
        first = client.get("/v1/keys", params={"prefix": "p/", "limit": "2"})
        assert first.status_code == 200
        page = first.json()
        assert (page["revision"], first.headers["x-tuco-revision"]) == (7, "7")
        assert page["items"] == [
            {
                "key": "p/0",
                "value": base64.b64encode(b"0").decode(),
                "create_revision": 1,
                "mod_revision": 1,
                "version": 1,
            },
            {
                "key": "p/1",
                "value": base64.b64encode(b"1").decode(),
                "create_revision": 2,
                "mod_revision": 2,
                "version": 1,
            },
        ]
        assert client.delete(key_path("p/3")).status_code == 200
        rest = client.get(
            "/v1/keys",
            params={"prefix": "p/", "limit": "5", "keys_only": "true", "page_token": page["next_page_token"]},
        ).json()
        assert rest == {
            "revision": 7,
            "items": [
                {"key": f"p/{n}", "create_revision": n + 1, "mod_revision": n + 1, "version": 1} for n in (2, 3, 4)
            ],
            "next_page_token": None,
        }
        everything = client.get("/v1/keys", params={"keys_only": "1"}).json()
        assert [item["key"] for item in everything["items"]] == ["alias", "keys", "p/0", "p/1", "p/2", "p/4"]
        assert client.get("/v1/key/keys").content == b"named keys"
        assert client.get("/v1/key/alias").content == b"via alias"
        reserved = client.get("/v1/openapi.json")  # every reserved name is a resource now
        assert (reserved.status_code, reserved.json()["info"]["title"]) == (200, "tuco")
        assert client.post("/v1/keys").headers["allow"] == "GET, HEAD, DELETE"
        assert client.get("/v1/keys", params={"limit": "1001"}).json()["error"] == "invalid_parameter"
        assert client.get("/v1/keys", params={"page_token": "x"}).json()["error"] == "invalid_page_token"


async def _increment(urls: list[str], client_number: int, rounds: int, consistent: bool) -> tuple[int, int]:
    """Read-increment-write the counter ``rounds`` times with If-Match, retrying on 412; return (writes, 412s)."""
    url = urls[client_number % len(urls)]
    params = {"consistent": "true"} if consistent else None
    successes = refusals = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while successes < rounds:
            got = await client.get("/v1/key/counter", params=params)
            assert got.status_code == 200
            tag = got.headers["etag"]
            written = await client.put(
                "/v1/key/counter", content=b"%d" % (int(got.content) + 1), headers={"If-Match": tag}
            )
            if written.status_code == 201:
                successes += 1
                assert int(written.headers["etag"].strip('"')) > int(tag.strip('"'))
                continue
            assert written.status_code == 412, written.text
            assert written.json()["error"] == "precondition_failed"
            current = written.headers["etag"]
            assert current.startswith('"') and current.endswith('"')
            assert int(current.strip('"')) > int(tag.strip('"'))  # someone else wrote it since our read
            refusals += 1
    return successes, refusals


def _run_counter(urls: list[str], clients: int, rounds: int, consistent: bool) -> int:
    async def main() -> tuple[list[tuple[int, int]], int]:
        async with httpx.AsyncClient(base_url=urls[0], timeout=30) as client:
            assert (
                await client.put("/v1/key/counter", content=b"0", headers={"If-None-Match": "*"})
            ).status_code == 201
        results = await asyncio.gather(*(_increment(urls, n, rounds, consistent) for n in range(clients)))
        async with httpx.AsyncClient(base_url=urls[-1], timeout=30) as client:
            final = await client.get("/v1/key/counter", params={"consistent": "true"})
        return list(results), int(final.content)

    results, final = asyncio.run(main())
    assert final == sum(successes for successes, _ in results) == clients * rounds
    return sum(refused for _, refused in results)


def test_compare_and_swap_counter_on_the_file_log(tuco: StartTuco) -> None:
    """Clients loop read-increment-write with If-Match: the counter equals the successful writes exactly."""
    server = tuco()
    refusals = _run_counter([server.url], clients=8, rounds=15, consistent=False)
    assert refusals > 0  # the clients did race: conditions were really decided


@pytest.mark.postgres
@pytest.mark.usefixtures("pg_dsn")
def test_compare_and_swap_counter_on_two_postgres_replicas(tuco: StartTuco, pg_dsn: str) -> None:
    """The same counter with clients spread over two replicas of one database: no increment lost or doubled."""
    replicas = [
        tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn, TUCO_DATA_DIR=f"/nonexistent/{name}")
        for name in ("a", "b")
    ]
    refusals = _run_counter([replica.url for replica in replicas], clients=8, rounds=10, consistent=True)
    assert refusals > 0


@pytest.mark.postgres
def test_a_page_token_from_a_replica_ahead_is_served_after_catching_up(tuco: StartTuco, pg_dsn: str) -> None:
    """A replica that has not yet seen the token's revision catches up and serves the page at that revision."""
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn}
    writer = tuco(TUCO_DATA_DIR="/nonexistent/a", **env)
    # No polling to speak of and no notifications: this replica learns of writes only by catching up.
    lagging = tuco(TUCO_DATA_DIR="/nonexistent/b", TUCO_POLL_INTERVAL_SECONDS="3600", TUCO_LISTEN_NOTIFY="false", **env)
    with (
        httpx.Client(base_url=writer.url, timeout=10) as first,
        httpx.Client(base_url=lagging.url, timeout=10) as second,
    ):
        for n in range(4):
            assert first.put(key_path(f"r/{n}"), content=b"v%d" % n).status_code == 201
        page = first.get("/v1/keys", params={"prefix": "r/", "limit": "2"}).json()
        assert page["revision"] == 4
        assert second.get("/v1/key/r%2F3").status_code == 404  # it has not caught up on its own
        rest = second.get("/v1/keys", params={"prefix": "r/", "limit": "2", "page_token": page["next_page_token"]})
        assert rest.status_code == 200
        assert rest.json() == {
            "revision": 4,
            "items": [
                {
                    "key": f"r/{n}",
                    "value": base64.b64encode(b"v%d" % n).decode(),
                    "create_revision": n + 1,
                    "mod_revision": n + 1,
                    "version": 1,
                }
                for n in (2, 3)
            ],
            "next_page_token": None,
        }
