"""A real browser's EventSource watches tuco: headless Debian chromium, a page from another origin, CORS allowed.

The page (served by a tiny server in the test) opens an ``EventSource`` on
``tuco serve``, collects the events and POSTs what it received back to its own
origin; the test asserts exact events. Without chromium the test skips, and
fails under ``CI=true`` (``scripts/test`` installs it).
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.process import TucoProcess
from tests.needs import command

StartTuco = Callable[..., TucoProcess]

PAGE = """<!doctype html><html><body><script>
const got = [];
const source = new EventSource("%(tuco)s/v1/watch?prefix=b%%2F&start_revision=1");
function record(e) {
  got.push({type: e.type, id: e.lastEventId, data: JSON.parse(e.data)});
  if (got.length === %(count)d) {
    source.close();
    fetch("/result", {method: "POST", body: JSON.stringify(got)});
  }
}
source.addEventListener("put", record);
source.addEventListener("delete", record);
</script></body></html>"""


def chromium() -> str:
    """Debian's chromium from PATH; missing, the test fails under CI=true and skips elsewhere."""
    return command("chromium", "scripts/test installs Debian's chromium")


class PageServer:
    """Serves the page at / and takes the page's report at POST /result."""

    def __init__(self, page: str) -> None:
        self.page = page.encode()
        self.result: bytes | None = None
        self.received = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(outer.page)))
                self.end_headers()
                self.wfile.write(outer.page)

            def do_POST(self) -> None:
                outer.result = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(204)
                self.end_headers()
                outer.received.set()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def open_page(browser: str, tmp_path: Path, url: str) -> subprocess.Popen[bytes]:
    """Headless chromium showing ``url``, with a profile of its own under ``tmp_path``."""
    return subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            f"--user-data-dir={tmp_path / 'chromium'}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(page: PageServer, process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(10)
    page.close()


def reported(page: PageServer, process: subprocess.Popen[bytes]) -> Any:
    """What the page POSTed back (within 30 s); the browser and the page's server are stopped either way."""
    try:
        assert page.received.wait(30), "the page reported nothing"
    finally:
        stop(page, process)
    assert page.result is not None
    return json.loads(page.result)


@pytest.mark.slow
def test_a_browser_eventsource_receives_exact_events_across_origins(tuco: StartTuco, tmp_path: Path) -> None:
    """Chromium's EventSource on another origin gets each put and delete, with ids and JSON, in order."""
    browser = chromium()
    page = PageServer("")
    origin = f"http://127.0.0.1:{page.port}"
    server = tuco(TUCO_CORS_ALLOW_ORIGINS=origin)
    page.page = (PAGE % {"tuco": server.url, "count": 4}).encode()
    with server.client() as client:
        assert client.put("/v1/key/b%2F1", content=b"one").status_code == 201
        assert client.put("/v1/key/a", content=b"not watched").status_code == 201
        assert client.put("/v1/key/b%2F2", content="twö".encode()).status_code == 201
    process = open_page(browser, tmp_path, origin + "/")
    try:
        time.sleep(1.0)
        with server.client() as client:  # live changes, after the page (probably) connected
            assert client.delete("/v1/key/b%2F1").status_code == 200
            assert client.put("/v1/key/b%2F3", content=b"\xff\x00").status_code == 201
    except BaseException:
        stop(page, process)
        raise
    got = reported(page, process)
    b64 = lambda v: base64.b64encode(v).decode()  # noqa: E731
    moments = [event["data"].pop("at") for event in got]  # who changed what: the log's clock, in order
    assert all(isinstance(at, int) for at in moments) and moments == sorted(moments)
    assert got == [
        {
            "type": "put",
            "id": "1",
            "data": {
                "revision": 1,
                "key": "b/1",
                "value": b64(b"one"),
                "mod_revision": 1,
                "create_revision": 1,
                "version": 1,
                "by": "anonymous",
            },
        },
        {
            "type": "put",
            "id": "3",
            "data": {
                "revision": 3,
                "key": "b/2",
                "value": b64("twö".encode()),
                "mod_revision": 3,
                "create_revision": 3,
                "version": 1,
                "by": "anonymous",
            },
        },
        {"type": "delete", "id": "4", "data": {"revision": 4, "key": "b/1", "by": "anonymous", "reason": "deleted"}},
        {
            "type": "put",
            "id": "5",
            "data": {
                "revision": 5,
                "key": "b/3",
                "value": b64(b"\xff\x00"),
                "mod_revision": 5,
                "create_revision": 5,
                "version": 1,
                "by": "anonymous",
            },
        },
    ]


REFUSED_PAGE = """<!doctype html><html><body><script>
async function report(what) {
  await fetch("/result", {method: "POST", body: JSON.stringify(what)});
}
fetch("%(tuco)s/v1/key/big", {method: "PUT", body: new Uint8Array(%(size)d),
                               headers: {"Content-Type": "application/octet-stream"}})
  .then(async r => report({status: r.status, body: await r.json()}))
  .catch(e => report({failed: String(e)}));
</script></body></html>"""


@pytest.mark.slow
def test_a_browser_page_reads_why_its_value_was_refused_before_the_api(tuco: StartTuco, tmp_path: Path) -> None:
    """A page's PUT of a value over the limit gets the 413 and its JSON, not a network error: CORS fields on it too.

    tuco serve refuses the body from its Content-Length, before the request reaches the API and its CORS
    layer; without the fields, chromium hid the answer from the page (``TypeError: Failed to fetch``).
    """
    browser = chromium()
    page = PageServer("")
    origin = f"http://127.0.0.1:{page.port}"
    server = tuco(TUCO_CORS_ORIGINS=origin, TUCO_MAX_VALUE_BYTES="1024")
    page.page = (REFUSED_PAGE % {"tuco": server.url, "size": 1025}).encode()
    got = reported(page, open_page(browser, tmp_path, origin + "/"))
    assert got == {
        "status": 413,
        "body": {
            "error": "value_too_large",
            "message": "the value is over the 1024-byte limit (TUCO_MAX_VALUE_BYTES): send a smaller value, split "
            "it across keys, or raise the limit",
        },
    }
