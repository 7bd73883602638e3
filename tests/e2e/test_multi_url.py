"""The multi-URL client: three PostgreSQL replicas, one killed and restarted under a read/write load."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess
from tests.fix_db import eventually
from tuco.client import Backoff, Client, Entry, OutcomeUnknownError
from tuco.errors import PreconditionFailedError, TucoError

StartTuco = Callable[..., TucoProcess]

OPS = 600


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.xdist_group("heavy")
def test_one_of_three_replicas_killed_and_restarted_under_load(tuco: StartTuco, pg_dsn: str) -> None:
    """Reads never fail, plain writes succeed, conditional writes succeed, lose a race or report an unknown outcome."""
    env = {"TUCO_LOG_BACKEND": "postgres", "TUCO_DATABASE_URL": pg_dsn}
    replicas = [tuco(TUCO_PORT=str(free_port()), TUCO_DATA_DIR=f"/nonexistent/{n}", **env) for n in range(3)]
    urls = ",".join(replica.url for replica in replicas)
    outcomes: Counter[str] = Counter()
    failures: list[BaseException] = []
    guard = threading.Lock()
    done = [0]

    def note(kind: str) -> None:
        with guard:
            outcomes[kind] += 1
            done[0] += 1

    def load(n: int) -> None:
        with Client(urls, timeout=10) as client:
            for i in range(OPS):
                try:
                    if i % 3 == 0:
                        client.put(f"plain/{n}", f"{i}")
                        note("plain")
                    elif i % 3 == 1:
                        client.get("shared")
                        note("read")
                    else:
                        entry = client.get("shared")
                        try:
                            client.put("shared", f"{n}-{i}", if_revision=entry.mod_revision)
                            note("cas")
                        except PreconditionFailedError:
                            note("cas-lost-race")
                        except OutcomeUnknownError:
                            note("cas-unknown")
                except TucoError as exc:
                    with guard:
                        failures.append(exc)

    with Client(replicas[0].url) as setup:
        setup.put("shared", "start")
    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    eventually(lambda: done[0] >= 200, timeout=120, what="load flowing")
    replicas[1].kill()
    killed_at = done[0]
    eventually(lambda: done[0] >= killed_at + 200, timeout=120, what="load flowing without replica 1")
    replicas[1].start()
    restarted_at = done[0]
    eventually(lambda: done[0] >= restarted_at + 200, timeout=120, what="load flowing after the restart")
    assert done[0] < 4 * OPS
    for thread in threads:
        thread.join(300)
    assert failures == []
    assert outcomes["plain"] == 4 * len(range(0, OPS, 3))
    assert outcomes["read"] == 4 * len(range(1, OPS, 3))
    assert outcomes["cas"] + outcomes["cas-lost-race"] + outcomes["cas-unknown"] == 4 * len(range(2, OPS, 3))
    assert outcomes["cas"] > 0
    print(f"\n{dict(outcomes)}")
    with Client(urls) as client:
        for n in range(4):
            assert client.get(f"plain/{n}", consistent=True).value == str(3 * ((OPS - 1) // 3)).encode()


class SilentServer:
    """Accepts connections and reads the request, then closes without an answer: the outcome is unknown."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1

    def close(self) -> None:
        self.sock.close()


def test_a_sent_conditional_write_without_an_answer_is_reported_not_retried(tuco: StartTuco) -> None:
    """First URL swallows requests: a CAS raises OutcomeUnknownError, a plain PUT and a GET go on to the next URL."""
    server = tuco()
    silent = SilentServer()
    refused = f"http://127.0.0.1:{free_port()}"
    try:
        with Client(server.url) as direct:
            created = direct.put("k", "v1").revision
        with Client([silent.url, server.url], backoff=Backoff(base=0.001)) as client:
            with pytest.raises(OutcomeUnknownError) as unknown:
                client.put("k", "v2", if_revision=created)
            assert silent.url in str(unknown.value)
            assert silent.requests == 1
            assert client.get("k").value == b"v1"  # never applied: the silent server swallowed it
            written = client.put("k", "plain")  # the writer moved on to the next URL
            assert client.get("k", consistent=True) == Entry("k", b"plain", written.revision, written.revision)
        with Client(f"{refused}, {server.url}") as client:
            assert client.put("k", "v3", if_revision=written.revision).revision > written.revision  # never sent
            assert client.options.urls == (refused, server.url)
    finally:
        silent.close()
