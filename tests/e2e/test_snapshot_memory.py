"""A snapshot of 100,000 keys of 1 KiB streamed to a slow reader, with writes going on: the server's RSS stays bounded.

The design keeps no copy of the store: what a running snapshot adds is one
chunk being encoded (64 keys), the stream's backlog (256 KiB), the sorted key
index (built once, about 10 bytes a key) and a before image per key written
during it (240 bytes, its key, and the old value it keeps alive). The bound
asserted is those plus room for the allocator, far below the ~110 MiB a
materialised snapshot (or a copy of the values) would take.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.process import TucoProcess
from tuco.core.snapshot import KeyRecord, SnapshotDecoder, SnapshotEncoder

StartTuco = Callable[..., TucoProcess]
KEYS = 100_000
VALUE = 1024
WRITES = 2_000
SLACK = 16 << 20  # the allocator's arenas, the connection, a GC generation: independent of the store's size
BOUND = 256 * (VALUE + 100) * 2 + (256 << 10) * 2 + KEYS * 16 + WRITES * (240 + 16 + VALUE) + SLACK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
@pytest.mark.xdist_group("heavy")
def test_streaming_a_large_snapshot_with_writes_keeps_the_server_rss_bounded(tuco: StartTuco, tmp_path: Path) -> None:
    """Extra RSS while 100,000 keys of 1 KiB stream to a slow reader under 2,000 writes stays under the bound."""
    encoder = SnapshotEncoder(KEYS, 0)
    parts = [encoder.header()]
    parts += [
        encoder.key(KeyRecord(f"k/{n:06d}", b"%06d" % n * (VALUE // 6 + 1), n + 1, n + 1, 1)) for n in range(KEYS)
    ]
    source = tmp_path / "seed.snap"
    source.write_bytes(b"".join([*parts, encoder.trailer()]))
    del parts
    restore = [sys.executable, "-m", "tuco", "snapshot", "restore", str(source), "--data-dir", str(tmp_path / "d")]
    subprocess.run(restore, check=True, capture_output=True, timeout=300)
    server = tuco(data_dir=tmp_path / "d")
    with server.client() as http:  # build the sorted key index first: a listing needs it too, once
        assert http.get("/v1/keys", params={"limit": 1}).status_code == 200
    baseline = rss_kib(server.pid)
    peak = baseline
    stop = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as writer:
            for n in range(WRITES):
                if stop.is_set():
                    return
                assert writer.put(f"/v1/key/k%2F{n * 37 % KEYS:06d}", content=b"w" * VALUE).status_code == 201

    decoder = SnapshotDecoder()
    thread = threading.Thread(target=write)
    with server.client() as http, http.stream("GET", "/v1/snapshot") as stream:
        assert stream.status_code == 200
        thread.start()
        for chunk in stream.iter_raw(64 << 10):
            decoder.feed(chunk)
            peak = max(peak, rss_kib(server.pid))
            time.sleep(0.001)
    stop.set()
    thread.join()
    summary = decoder.finish()
    assert summary.keys == KEYS
    assert summary.revision == KEYS
    extra = (peak - baseline) * 1024
    assert extra < BOUND, f"the snapshot added {extra >> 20} MiB to the server's RSS (bound {BOUND >> 20} MiB)"
