"""TUCO_HISTORY_RETAIN_SECONDS on both backends: reads inside it answer, older ones get 410, across compactions."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]

_RETAIN_SECONDS = 10  # the fills after the sleep take a second or two; ten leaves room on a loaded machine


def test_a_read_inside_the_retention_answers_and_one_older_gets_410(tuco: StartTuco, backend: dict[str, str]) -> None:
    """Changes older than the retention before the newest are dropped; the 410 names the oldest retained revision."""
    server = tuco(**backend, TUCO_HISTORY_RETAIN_SECONDS=str(_RETAIN_SECONDS), TUCO_LOG_COMPACT_MIN_BYTES="4096")
    with server.client() as http:
        first = int(http.put("/v1/key/x", content=b"old 1").headers["etag"].strip('"'))
        second = int(http.put("/v1/key/x", content=b"old 2").headers["etag"].strip('"'))
        inside = http.get(f"/v1/key/x?revision={first}")
        assert (inside.status_code, inside.content) == (200, b"old 1")
        time.sleep(_RETAIN_SECONDS + 0.5)  # the two changes become older than the retention
        kept = int(http.put("/v1/key/x", content=b"new 1").headers["etag"].strip('"'))
        for n in range(150 if not backend else 3):  # the file log: compactions (4 KiB and twice the live data)
            assert http.put(f"/v1/key/fill{n % 3}", content=b"f" * 100).status_code == 201
        gone = http.get(f"/v1/key/x?revision={first}")
        assert gone.status_code == 410
        assert (gone.json()["error"], gone.json()["oldest_revision"]) == ("history_compacted", second)
        listed = http.get(f"/v1/keys?prefix=x&revision={first}")
        assert (listed.status_code, listed.json()["oldest_revision"]) == (410, second)
        at_oldest = http.get(f"/v1/key/x?revision={second}")  # the state just before the oldest change kept
        assert (at_oldest.status_code, at_oldest.content) == (200, b"old 2")
        at_kept = http.get(f"/v1/key/x?revision={kept}")
        assert (at_kept.status_code, at_kept.content) == (200, b"new 1")
        page = http.get(f"/v1/keys?prefix=fill&revision={kept + 3}").json()
        assert [item["key"] for item in page["items"]] == ["fill0", "fill1", "fill2"]
    if not backend:
        assert sum(event.get("event") == "log_compacted" for event in server.events()) >= 1, server.output()
