"""What would stall the event loop under writes is done elsewhere: seen on a real ``tuco serve`` under strace.

The loop serves every connection, so anything slow on its thread is every request's latency. The last close
of a compacted-away log file frees its blocks inside ``close`` (about 20 ms for a 67 MB log here, once per
compaction, the 1 KiB PUT's p99): that close belongs to a worker thread.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.e2e.process import TucoProcess
from tests.e2e.test_file_faults import strace_or_fail


class ClosesTraced(TucoProcess):
    """``tuco serve`` under ``strace -f -y``, every thread's ``close`` written to ``trace`` with the path closed."""

    def __init__(self, env: dict[str, str], *, cwd: Path, trace: Path) -> None:
        super().__init__(env, cwd=cwd)
        self.trace = trace

    def command(self) -> list[str]:
        tracer = [strace_or_fail(), "-f", "-qq", "-y", "--seccomp-bpf", "-e", "trace=close", "-o", str(self.trace)]
        return [*tracer, *super().command()]

    def signal(self, signum: int, timeout: float) -> int:
        """Signal the server itself: strace, signalled, would detach and leave it running."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.server_pid(), signum)
        return self.wait_exit(timeout)

    def server_pid(self) -> int:
        """The server's own pid (strace's child), which is also its event loop thread's id."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])


def test_the_compacted_away_log_is_closed_off_the_event_loop_thread(tmp_path: Path) -> None:
    """Two compactions under overwrites: every close of the replaced file runs in a thread other than the loop's."""
    data = tmp_path / "data"
    trace = tmp_path / "closes.trace"
    log = data / "tuco.log"
    env = {"TUCO_DATA_DIR": str(data), "TUCO_LOG_COMPACT_MIN_BYTES": str(64 << 10), "TUCO_LOG_SYNC": "everysec"}
    server = ClosesTraced(env, cwd=tmp_path, trace=trace)
    try:
        server.start()
        loop_thread = server.server_pid()
        with server.client() as http:
            for round_ in range(400):  # 100 keys of 1 KiB, overwritten: the file outgrows its state again and again
                status = http.put(f"/v1/key/k{round_ % 100}", content=bytes([65 + round_ % 26]) * 1024).status_code
                assert status in (200, 201), status
                if sum(1 for event in server.events() if event.get("event") == "log_compacted") >= 2:
                    break
        compactions = [event for event in server.events() if event.get("event") == "log_compacted"]
        assert len(compactions) >= 2, server.output()
        assert server.terminate() == 0
    finally:
        server.stop_quietly()
    # "close(13</path>(deleted)) = 0", or "close(13</path>(deleted) <unfinished ...>" when another thread's call
    # came between: either way the thread id leads the line.
    replaced = re.compile(rf"^(\d+) +close\(\d+<{re.escape(str(log))}>\(deleted\)")
    closes = [int(found.group(1)) for line in trace.read_text().splitlines() if (found := replaced.match(line))]
    # Each compaction leaves two descriptors of the old file: the log's own and the one it copied the tail from.
    assert len(closes) >= 2 * len(compactions), trace.read_text()[-4000:]
    assert loop_thread not in closes, f"the loop thread {loop_thread} closed a replaced log: {closes}"
