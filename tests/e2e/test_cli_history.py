"""tuco history and the client's history() (sync and async) against a real server: who changed a key, newest first."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

from tests.e2e.process import TucoProcess
from tests.e2e.test_cli import _tuco
from tuco.client import AsyncClient, Client

StartTuco = Callable[..., TucoProcess]


def test_history_through_the_client_and_the_cli(tuco: StartTuco) -> None:
    """Three changes of a key come back newest first, anonymous (auth off), paged by before; the CLI prints them."""
    server = tuco()
    with Client(server.url) as client:
        client.put("h", b"1")
        client.put("other", b"x")
        client.put("h", b"2")
        client.delete("h")
        page = client.history("h", limit=2)
        assert [(c.revision, c.type, c.value, c.by, c.reason) for c in page.changes] == [
            (4, "delete", None, "anonymous", "deleted"),
            (3, "put", b"2", "anonymous", None),
        ]
        assert page.next_before == 3
        rest = client.history("h", before=3)
        assert [(c.revision, c.by) for c in rest.changes] == [(1, "anonymous")] and rest.next_before is None

    async def from_async() -> list[int]:
        async with AsyncClient(server.url) as client:
            return [c.revision for c in (await client.history("h")).changes]

    assert asyncio.run(from_async()) == [4, 3, 1]
    shown = _tuco("history", "h", url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert re.sub(r"at=\d+", "at=T", shown.stdout.decode()) == (
        "4\tdelete\tby=anonymous\tat=T\treason=deleted\n3\tput\tby=anonymous\tat=T\n1\tput\tby=anonymous\tat=T\n"
    )
    as_json = json.loads(_tuco("history", "h", "--limit", "1", "--output", "json", url=server.url).stdout)
    assert as_json["next_before"] == 4 and as_json["changes"][0]["reason"] == "deleted"
    bad = _tuco("history", "h", "--before", "0", url=server.url)
    assert bad.returncode == 2
