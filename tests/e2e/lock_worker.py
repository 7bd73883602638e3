"""A lock contender for the fault tests: ``python -m tests.e2e.lock_worker URLS NAME FENCE_URL TTL STEPS``.

It loops: open a session, take the lock, and do STEPS steps of work on the fenced
resource (an HTTP endpoint of the test process) with its fencing token, checking
before each step that the lock is still surely held. It stops when the resource says
enough work was done.
"""

from __future__ import annotations

import os
import sys
import time

import httpx

from tuco.client import Client
from tuco.errors import TucoError


def main() -> None:
    urls, name, fence, ttl, steps = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    pid = os.getpid()
    with Client(urls, timeout=5) as client, httpx.Client(base_url=fence, timeout=30) as resource:
        while True:
            try:
                with client.session(ttl=ttl) as session:
                    while session.alive():
                        lock = session.lock(name)
                        if not lock.acquire():
                            continue
                        token = lock.token
                        for step in range(steps):
                            if not lock.held:  # paused past the ttl: we learn it here, before acting
                                break
                            answer = resource.post("/work", params={"pid": pid, "token": token, "step": step})
                            if answer.status_code == 410:
                                lock.release()
                                return
                            if answer.status_code != 200:
                                break
                            time.sleep(0.02)
                        lock.release()
            except TucoError:
                time.sleep(0.1)  # the server restarting, a session lost while acquiring: start over


if __name__ == "__main__":
    main()
