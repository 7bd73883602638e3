"""SIGKILL a file-log server again and again while it compacts online: nothing acknowledged is ever lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess
from tests.e2e.test_durability import Op, _burst, _check_never_older, _read_state

StartTuco = Callable[..., TucoProcess]


def test_repeated_sigkills_during_online_compactions_lose_nothing_acknowledged(tuco: StartTuco, tmp_path: Path) -> None:
    """Four rounds of burst, compactions, SIGKILL and restart on one data directory: no key is ever older than acked."""
    data = tmp_path / "data"
    # Long keys make the live state big enough that batches land while a compaction writes it out.
    keys = [f"key {n} ".ljust(1000, "k") for n in range(50)]
    ops: list[Op] = []
    for round_ in range(4):
        server = tuco(data_dir=data, TUCO_LOG_COMPACT_MIN_BYTES="8192")
        if round_:
            _check_never_older(ops, _read_state(server.url, keys))  # what the previous kill left
        else:
            with server.client() as http:  # every key written once, so each has a history to check against
                for key in keys:
                    op = Op(key, b"first", time.monotonic())
                    ops.append(op)
                    assert http.put(key_path(key), content=b"first").status_code == 201
                    op.acked = time.monotonic()

        async def scenario(server: TucoProcess = server, extra: int = 37 * round_) -> int:
            stop = asyncio.Event()
            acked_before = sum(op.acked is not None for op in ops)
            burst = asyncio.create_task(_burst(server.url, 16, keys, ops, stop))
            deadline = time.monotonic() + 60
            count = 0
            while time.monotonic() < deadline and not burst.done():
                count = sum(event.get("event") == "log_compacted" for event in server.events())
                acked = sum(op.acked is not None for op in ops) - acked_before
                if count >= 2 and acked >= 300 + extra:  # a different moment in the compaction cycle each round
                    break
                await asyncio.sleep(0.01)
            server.kill()
            stop.set()
            await burst
            return count

        compacted = asyncio.run(scenario())
        assert compacted >= 2, f"round {round_}: only {compacted} compactions"
        assert [e for e in server.events() if e.get("event") in ("log_compaction_failed", "log_failed")] == []
    final = tuco(data_dir=data)
    _check_never_older(ops, _read_state(final.url, keys))
    assert final.terminate() == 0
