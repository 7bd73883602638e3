"""Time listing pages over a large store, in process: ``.venv/bin/python bench/list_page.py``.

Builds a store of ``--keys`` keys (replay path, as at start-up), then times
the HTTP API's ``GET /v1/keys?limit=1000`` through :class:`KeyValueAPI`
(routing, parameters, the page, JSON and base64): the first page (which
builds the sorted key index once), later pages by token, and a page pinned at
an older revision after ``--writes`` writes (rebuilt from the history). Not a
test: it prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time

from tuco.core.events import Event, EventType
from tuco.http.api import KeyValueAPI
from tuco.http.messages import Request, Response
from tuco.service import Service
from tuco.testing import MemoryLog


def _page(api: KeyValueAPI, query: bytes) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    response = api.handle(Request(b"GET", b"/v1/keys", query))
    elapsed = time.perf_counter() - started
    if not isinstance(response, Response) or response.status != 200:
        raise SystemExit(f"unexpected answer: {response!r}")
    return elapsed, json.loads(response.body)


async def main(keys: int, writes: int, pages: int) -> None:
    service = Service(MemoryLog())
    await service.start()
    started = time.perf_counter()
    gc.disable()
    service.store.apply_batch(Event(n + 1, EventType.PUT, f"key/{n:09d}", b"v" * 32) for n in range(keys))
    gc.enable()
    print(f"store of {len(service.store):,} keys built in {time.perf_counter() - started:.2f} s")
    api = KeyValueAPI(service)

    first, page = _page(api, b"limit=1000")
    print(f"first 1,000-item page (builds the sorted index): {first * 1000:.1f} ms")
    token = page["next_page_token"]
    times = []
    for _ in range(pages):
        elapsed, page = _page(api, b"limit=1000&page_token=" + str(token).encode())
        times.append(elapsed)
        token = page["next_page_token"]
    print(f"later 1,000-item pages: median {statistics.median(times) * 1000:.2f} ms, max {max(times) * 1000:.2f} ms")
    keys_only = [_page(api, b"limit=1000&keys_only=true")[0] for _ in range(pages)]
    print(f"keys_only 1,000-item pages: median {statistics.median(keys_only) * 1000:.2f} ms")

    _, pinned = _page(api, b"limit=1000")
    revision = pinned["revision"]
    for n in range(writes):
        service.store.apply(Event(revision + n + 1, EventType.PUT, f"key/{n * 7 % keys:09d}", b"w" * 32))
    old = []
    token = pinned["next_page_token"]
    for _ in range(pages):
        elapsed, page = _page(api, b"limit=1000&page_token=" + str(token).encode())
        if page["revision"] != revision:
            raise SystemExit("the pinned revision was not kept")
        old.append(elapsed)
        token = page["next_page_token"]
    print(
        f"pages pinned {writes:,} writes back (rebuilt from history): median {statistics.median(old) * 1000:.2f} ms, "
        f"max {max(old) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=20)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.keys, arguments.writes, arguments.pages))
