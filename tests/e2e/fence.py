"""A fenced resource for the lock tests: an HTTP endpoint that refuses any token lower than the highest seen.

Every request is recorded (accepted or not), in arrival order, so a test can check
that accepted work never overlaps between holders and that no stale token got through.
"""

from __future__ import annotations

import http.server
import threading
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit


class Work(NamedTuple):
    """One step a holder tried: who, with which token, which step, and whether the resource took it."""

    pid: int
    token: int
    step: int
    accepted: bool


class Fence:
    """The resource: the highest token seen, every step tried, and how many full sections were done."""

    def __init__(self, steps: int, target: int) -> None:
        self.steps = steps
        self.target = target
        self.highest = 0
        self.log: list[Work] = []
        self.guard = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Fence:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def completed(self) -> int:
        """Sections whose every step was accepted."""
        with self.guard:
            return len({work.token for work in self.log if work.accepted and work.step == self.steps - 1})

    def current_holder(self) -> int | None:
        """The pid of the last accepted step."""
        with self.guard:
            accepted = [work.pid for work in self.log if work.accepted]
            return accepted[-1] if accepted else None

    def take(self, pid: int, token: int, step: int) -> int:
        """Record one step; 200 taken, 409 a stale token, 410 enough work done."""
        with self.guard:
            done = len({work.token for work in self.log if work.accepted and work.step == self.steps - 1})
            if done >= self.target:
                return 410
            accepted = token >= self.highest
            if accepted:
                self.highest = token
            self.log.append(Work(pid, token, step, accepted))
            return 200 if accepted else 409

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fence = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                status = fence.take(int(query["pid"][0]), int(query["token"][0]), int(query["step"][0]))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def check(log: list[Work], paused: set[int]) -> None:
    """Accepted work never interleaves between tokens, carries no stale token, and only paused pids were refused."""
    highest = 0
    finished: set[int] = set()
    current: int | None = None
    for work in log:
        if not work.accepted:
            assert work.pid in paused, f"a holder that was never paused was refused: {work}"
            continue
        assert work.token >= highest, f"stale token accepted: {work}"
        highest = work.token
        if work.token != current:
            assert work.token not in finished, f"token {work.token} came back after another holder's work"
            if current is not None:
                finished.add(current)
            current = work.token
