"""Instructions per request of tuco's own code path, counted by valgrind: a figure load cannot move.

``.venv/bin/python bench/instructions.py [--src OTHER/src] [--what get,put] [--auth] [--asgi]``

Wall-clock and CPU-time figures swing by 15% or more on a shared two-core
machine; an instruction count does not. This drives one process's
:class:`~tuco.http.connection.HttpConnection` objects over an in-memory
transport (64 connections, 1,000 keys, 100-byte values, the file log in
``everysec`` mode), so it counts parsing, routing, the service, the group
commit, the store and response rendering, and leaves out the kernel's socket
work, which is the same for any two versions. Each figure is the difference
between a run of ``n2`` and one of ``n1`` requests divided by ``n2 - n1``, so
start-up and imports cancel out; start-up's objects are frozen out of the
cyclic collector first, as ``tuco serve`` does. ``--src`` counts another checkout (for a
before/after pair); checkouts from before the application layer (f2a2330 and
older) are driven through their ``Service.from_settings``. ``--auth`` runs the
server with ``TUCO_AUTH=token`` and sends every request with a bearer token
granted write on the keys (the authenticated request path). ``--asgi`` drives
:class:`~tuco.http.asgi.ASGIApp` instead, one task per request with a scope,
``receive`` and ``send`` as uvicorn hands them over: tuco's share of an ASGI
request, without the server's.

Needs ``valgrind`` (``apt-get install -y valgrind``); about a minute per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_CONNECTIONS = 64
_KEYS = 1000
_VALUE = b"v" * 100


class _Transport(asyncio.Transport):
    """Counts the responses the connection writes, and drops them."""

    def __init__(self) -> None:
        super().__init__()
        self.responses = 0
        self._closing = False

    def write(self, data: Any) -> None:
        self.responses += bytes(data).count(b"HTTP/1.1 ")

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True


_BOOTSTRAP = "instructions-bench-" + "0123456789abcdef" * 2


def _collector_as_served() -> None:
    """Set the cyclic collector up as ``tuco serve`` does after replay (``tuco.collector.freeze_start_up``).

    Start-up's objects (modules, the store's containers) leave the collector, so the figure counts the
    request path, not how many modules were imported; and the young generation's threshold is the server's.
    A checkout from before ``tuco.collector`` only freezes.
    """
    try:
        from tuco.collector import freeze_start_up
    except ImportError:
        gc.freeze()
        return
    freeze_start_up()


async def _drive(what: str, requests: int, auth: bool = False, header_only: bool = False, metrics: bool = True) -> int:
    """Answer ``requests`` GETs or PUTs through real connection objects; return the responses written.

    With ``metrics`` (the default, as ``tuco serve`` runs) every answer is counted for ``/metrics``, where the
    checkout has request metrics.
    """
    from tuco.config import load_settings
    from tuco.http.connection import HttpConnection, ServerContext
    from tuco.http.server import ServerSettings

    options: dict[str, Any] = {"auth": "token", "bootstrap_token": _BOOTSTRAP} if auth else {}
    settings = load_settings(data_dir=tempfile.mkdtemp(prefix="tuco-instructions-"), log_sync="everysec", **options)
    handler: Any
    observer: Any = None
    try:
        from tuco.assembly import build_service
        from tuco.http.api import KeyValueAPI

        registry: Any = None
        if metrics:
            try:
                from tuco.http.observer import RequestObserver
                from tuco.observability import Metrics
            except ImportError:  # a checkout from before request metrics
                pass
            else:
                registry = Metrics()
                observer = RequestObserver(registry)
        service: Any = build_service(settings, registry)
        await service.log.open()
        await service.start()
        handler = KeyValueAPI(service).handle
    except ImportError:  # a checkout from before the application layer
        from tuco.service import Service

        service = Service.from_settings(settings, None)  # type: ignore[attr-defined]
        await service.start()
        handler = service.api.handle
    header = b""
    if auth or header_only:
        from tuco.core.tokens import Grant, Permission

        _, token = await service.create_token("bench", [Grant("k", Permission.WRITE)])
        header = b"Authorization: Bearer %s\r\n" % token.encode()
    _collector_as_served()
    loop = asyncio.get_running_loop()
    ctx = (
        ServerContext(handler, ServerSettings(), loop)
        if observer is None
        else ServerContext(handler, ServerSettings(), loop, observer=observer)
    )
    ctx.date_tail = b"\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n"
    connections = []
    for _ in range(_CONNECTIONS):
        connection, transport = HttpConnection(ctx), _Transport()
        connection.connection_made(transport)
        connections.append((connection, transport))
    head = b"PUT /v1/key/k%d HTTP/1.1\r\nHost: 127.0.0.1\r\n%bContent-Length: %d\r\n\r\n"
    puts = [head % (i, header, len(_VALUE)) + _VALUE for i in range(_KEYS)]
    gets = [b"GET /v1/key/k%d HTTP/1.1\r\nHost: 127.0.0.1\r\n%b\r\n" % (i, header) for i in range(_KEYS)]
    for batch in range(0, _KEYS, _CONNECTIONS):  # preload every key
        for i in range(batch, min(batch + _CONNECTIONS, _KEYS)):
            connections[i % _CONNECTIONS][0].data_received(puts[i])
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.05)
    wanted = gets if what == "get" else puts
    for i in range(requests):
        connections[i % _CONNECTIONS][0].data_received(wanted[i % _KEYS])
        if what == "put" and i % _CONNECTIONS == _CONNECTIONS - 1:
            for _ in range(3):  # the group commit runs, then the answers go out
                await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    await service.aclose()
    return sum(transport.responses for _, transport in connections)


async def _drive_asgi(what: str, requests: int, metrics: bool = True) -> int:
    """Answer ``requests`` GETs or PUTs through the ASGI app, called as uvicorn calls it; return the responses."""
    from tuco.assembly import build_service
    from tuco.config import load_settings
    from tuco.http.asgi import ASGIApp
    from tuco.observability import Metrics

    settings = load_settings(data_dir=tempfile.mkdtemp(prefix="tuco-instructions-"), log_sync="everysec")
    service: Any = build_service(settings, Metrics() if metrics else None)
    await service.log.open()
    await service.start()
    app = ASGIApp(service)
    gc.freeze()
    responses = 0

    async def send(message: Any) -> None:
        nonlocal responses
        if message["type"] == "http.response.start":
            responses += 1

    def scope(method: str, i: int, body: bytes) -> dict[str, Any]:
        path = f"/v1/key/k{i}"
        headers = [(b"host", b"127.0.0.1:8080")]
        if body:
            headers.append((b"content-length", b"%d" % len(body)))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 40000 + i % _CONNECTIONS),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "state": {},
        }

    async def one(method: str, i: int, body: bytes) -> None:
        sent = {"type": "http.request", "body": body, "more_body": False}

        async def receive() -> Any:
            return sent

        await app(scope(method, i, body), receive, send)

    loop = asyncio.get_running_loop()
    for batch in range(0, _KEYS, _CONNECTIONS):  # preload every key
        await asyncio.gather(*(one("PUT", i, _VALUE) for i in range(batch, min(batch + _CONNECTIONS, _KEYS))))
    method, body = ("GET", b"") if what == "get" else ("PUT", _VALUE)
    for batch in range(0, requests, _CONNECTIONS):  # as uvicorn does: one task per request
        tasks = [
            loop.create_task(one(method, i % _KEYS, body)) for i in range(batch, min(batch + _CONNECTIONS, requests))
        ]
        await asyncio.wait(tasks)
    await service.aclose()
    return responses


def _count(
    src: Path,
    what: str,
    requests: int,
    auth: bool = False,
    header_only: bool = False,
    asgi: bool = False,
    metrics: bool = True,
) -> int:
    """Instructions valgrind counted for one whole run of ``requests`` requests."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}  # the same dict probes in every run
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    argv += ["--drive", what, str(requests)] + (["--auth"] if auth else []) + (["--header-only"] if header_only else [])
    argv += (["--asgi"] if asgi else []) + ([] if metrics else ["--no-metrics"])
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    expected = _KEYS + requests
    if done.returncode != 0 or found is None or f"answered {expected}" not in done.stdout:
        raise SystemExit(f"the run of {requests} {what}s failed:\n{done.stdout}\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description="Instructions per request, counted by valgrind.")
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    parser.add_argument("--what", default="get,put", help="comma-separated: get, put")
    parser.add_argument("--n1", type=int, default=2000)
    parser.add_argument("--n2", type=int, default=6000)
    parser.add_argument("--auth", action="store_true", help="TUCO_AUTH=token, every request with a bearer token")
    parser.add_argument(
        "--header-only", action="store_true", help="send the bearer header with authentication off (its parsing cost)"
    )
    parser.add_argument(
        "--asgi", action="store_true", help="through the ASGI app (tuco.http.asgi), called as a server would"
    )
    parser.add_argument(
        "--no-metrics", action="store_true", help="serve without request metrics (tuco serve always has them)"
    )
    parser.add_argument("--drive", nargs=2, metavar=("WHAT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        import uvloop

        what, n, metrics = args.drive[0], int(args.drive[1]), not args.no_metrics
        driven = _drive_asgi(what, n, metrics) if args.asgi else _drive(what, n, args.auth, args.header_only, metrics)
        print(f"answered {uvloop.run(driven)}")
        return 0
    if args.asgi and (args.auth or args.header_only):
        parser.error("--asgi counts the open path only")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    for what in args.what.split(","):
        low = _count(args.src, what, args.n1, args.auth, args.header_only, args.asgi, not args.no_metrics)
        high = _count(args.src, what, args.n2, args.auth, args.header_only, args.asgi, not args.no_metrics)
        mode = ", authenticated" if args.auth else ", with the header, authentication off" if args.header_only else ""
        mode += (", ASGI app" if args.asgi else "") + (", no request metrics" if args.no_metrics else "")
        print(
            f"{what}{mode}: {(high - low) // (args.n2 - args.n1):,} instructions per request ({args.src})", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
