"""Size limits as a running server applies them: a lowered key limit, and a zero value limit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]


def test_keys_stored_before_the_limit_was_lowered_can_be_read_listed_and_deleted(
    tuco: StartTuco, tmp_path: Path
) -> None:
    """After a restart with a smaller TUCO_MAX_KEY_BYTES, an older long key is served; only a PUT gets 414."""
    data = tmp_path / "data"
    long_key = "k" * 20
    first = tuco(data_dir=data)
    with first.client() as http:
        assert http.put(f"/v1/key/{long_key}", content=b"kept").status_code == 201
    assert first.terminate() == 0
    second = tuco(data_dir=data, TUCO_MAX_KEY_BYTES="10")
    with second.client() as http:
        got = http.get(f"/v1/key/{long_key}")
        assert (got.status_code, got.content, got.headers["etag"]) == (200, b"kept", '"1"')
        listed = http.get("/v1/keys", params={"keys_only": "true"}).json()
        assert [item["key"] for item in listed["items"]] == [long_key]
        refused = http.put(f"/v1/key/{long_key}", content=b"new")
        assert (refused.status_code, refused.json()["error"]) == (414, "key_too_long")
        assert http.delete(f"/v1/key/{long_key}").status_code == 200
        assert http.get(f"/v1/key/{long_key}").status_code == 404


def test_a_zero_value_limit_serves_empty_values_only(tuco: StartTuco) -> None:
    """TUCO_MAX_VALUE_BYTES=0 starts the native server; an empty PUT is stored and any byte is 413."""
    server = tuco(TUCO_MAX_VALUE_BYTES="0")
    with server.client() as http:
        assert http.put("/v1/key/empty", content=b"").status_code == 201
        assert http.get("/v1/key/empty").content == b""
        too_large = http.put("/v1/key/full", content=b"x")
        assert (too_large.status_code, too_large.json()["error"]) == (413, "value_too_large")
