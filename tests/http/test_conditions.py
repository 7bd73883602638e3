"""ETags, X-Tuco-Revision and conditional writes, in process through ASGI over the memory log."""

from __future__ import annotations

import httpx
import pytest

from tests.http.test_api import run_against
from tuco.service import Service


def test_get_and_head_carry_a_strong_etag_and_the_store_revision() -> None:
    """GET and HEAD answer ETag "<mod_revision>" and X-Tuco-Revision <store revision>; a 404 carries the revision."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.put("/v1/key/a", content=b"1")).headers["etag"] == '"1"'
        await client.put("/v1/key/b", content=b"2")
        got = await client.get("/v1/key/a")
        assert (got.status_code, got.content, got.headers["etag"], got.headers["x-tuco-revision"]) == (
            200,
            b"1",
            '"1"',
            "2",
        )
        head = await client.head("/v1/a")
        assert (head.status_code, head.headers["etag"], head.headers["x-tuco-revision"]) == (200, '"1"', "2")
        missing = await client.get("/v1/key/none")
        assert (missing.status_code, missing.headers["x-tuco-revision"]) == (404, "2")
        assert "etag" not in missing.headers

    run_against(check)


def test_put_and_delete_answer_the_revision_they_created() -> None:
    """PUT answers 201 with the new ETag and revision; DELETE answers 200 with its revision and no ETag."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        first = await client.put("/v1/key/k", content=b"v1")
        assert (first.status_code, first.headers["etag"], first.headers["x-tuco-revision"]) == (201, '"1"', "1")
        second = await client.put("/v1/key/k", content=b"v2")
        assert (second.headers["etag"], second.headers["x-tuco-revision"]) == ('"2"', "2")
        deleted = await client.delete("/v1/key/k")
        assert (deleted.status_code, deleted.headers["x-tuco-revision"], deleted.content) == (200, "3", b"")
        assert "etag" not in deleted.headers
        again = await client.delete("/v1/key/k")
        assert (again.status_code, again.headers["x-tuco-revision"]) == (200, "4")

    run_against(check)


def test_if_match_writes_only_at_that_revision_and_412_carries_the_current_etag() -> None:
    """If-Match "<rev>" writes when the key is at rev; otherwise 412 precondition_failed with the current ETag."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        await client.put("/v1/key/c", content=b"0")
        await client.put("/v1/key/other", content=b"x")
        ok = await client.put("/v1/key/c", content=b"1", headers={"If-Match": '"1"'})
        assert (ok.status_code, ok.headers["etag"]) == (201, '"3"')
        await client.put("/v1/key/other", content=b"y")
        stale = await client.put("/v1/key/c", content=b"2", headers={"If-Match": '"1"'})
        assert stale.status_code == 412
        assert (stale.headers["etag"], stale.headers["x-tuco-revision"]) == ('"3"', "4")
        assert stale.json() == {
            "error": "precondition_failed",
            "message": "the condition did not hold: the key is at revision 3",
        }
        assert service.store.get("c") == b"1"
        refused = await client.delete("/v1/key/c", headers={"If-Match": '"2"'})
        assert (refused.status_code, refused.headers["etag"]) == (412, '"3"')
        assert (await client.delete("/v1/key/c", headers={"If-Match": '"3"'})).status_code == 200
        assert "c" not in service.store

    run_against(check)


def test_if_match_star_requires_the_key_and_if_none_match_star_its_absence() -> None:
    """If-Match: * writes only an existing key; If-None-Match: * creates only; a 412 for an absent key has no ETag."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        absent = await client.put("/v1/key/k", content=b"v", headers={"If-Match": "*"})
        assert (absent.status_code, absent.headers["x-tuco-revision"]) == (412, "0")
        assert "etag" not in absent.headers
        assert absent.json()["message"] == "the condition did not hold: the key does not exist"
        created = await client.put("/v1/key/k", content=b"v", headers={"If-None-Match": "*"})
        assert (created.status_code, created.headers["etag"]) == (201, '"1"')
        exists = await client.put("/v1/key/k", content=b"w", headers={"If-None-Match": "*"})
        assert (exists.status_code, exists.headers["etag"]) == (412, '"1"')
        updated = await client.put("/v1/key/k", content=b"w", headers={"If-Match": "*"})
        assert (updated.status_code, updated.headers["etag"]) == (201, '"2"')
        gone = await client.delete("/v1/key/none", headers={"If-Match": "*"})
        assert gone.status_code == 412
        assert service.store.get("k") == b"w"

    run_against(check)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"If-Match": 'W/"1"'}, "weak entity tags are not accepted: tuco's ETags are strong"),
        ({"If-Match": '"1", "2"'}, "a list of entity tags is not accepted: send one"),
        ({"If-Match": "1"}, 'If-Match takes "*" or one ETag as tuco sends it: a revision in quotes, "12"'),
        ({"If-Match": '"0"'}, 'If-Match takes "*" or one ETag as tuco sends it: a revision in quotes, "12"'),
        ({"If-Match": '"abc"'}, 'If-Match takes "*" or one ETag as tuco sends it: a revision in quotes, "12"'),
        ({"If-None-Match": '"1"'}, 'If-None-Match takes only "*" (create only if absent)'),
        ({"If-Match": "*", "If-None-Match": "*"}, "send If-Match or If-None-Match, not both"),
    ],
)
def test_conditions_tuco_cannot_read_are_400_invalid_precondition(headers: dict[str, str], message: str) -> None:
    """Weak tags, lists, unquoted or zero revisions, a non-* If-None-Match, or both headers: 400, nothing written."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        response = await client.put("/v1/key/k", content=b"v", headers=headers)
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_precondition", "message": message}
        assert "k" not in service.store

    run_against(check)


def test_two_if_match_headers_are_refused() -> None:
    """If-Match sent twice is a list in disguise: 400 invalid_precondition."""

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        response = await client.put("/v1/key/k", content=b"v", headers=[("If-Match", '"1"'), ("If-Match", '"2"')])
        assert (response.status_code, response.json()["error"]) == (400, "invalid_precondition")

    run_against(check)


def test_a_stored_key_longer_than_a_lowered_limit_can_still_be_read_and_deleted() -> None:
    """The key limit refuses PUTs only: GET and DELETE of a longer stored key still work (414 on PUT)."""
    from tuco.core.events import Event, EventType
    from tuco.service import Limits
    from tuco.testing import MemoryLog

    long_key = "k" * 20
    log = MemoryLog([Event(1, EventType.PUT, long_key, b"old")])

    async def check(client: httpx.AsyncClient, service: Service) -> None:
        assert (await client.get(f"/v1/key/{long_key}")).content == b"old"
        refused = await client.put(f"/v1/key/{long_key}", content=b"new")
        assert (refused.status_code, refused.json()["error"]) == (414, "key_too_long")
        assert (await client.delete(f"/v1/key/{long_key}")).status_code == 200
        assert long_key not in service.store

    run_against(check, log=log, limits=Limits(max_key_bytes=10))
