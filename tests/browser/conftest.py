"""Fixtures of the console's browser tests: Debian's chromium through Playwright, real servers, screenshots.

The browser is the system one (``/usr/bin/chromium``, never ``playwright install``); without it these tests
skip, and fail under ``CI=true``. Each server is a real process: ``tuco serve`` (the native front end) or
uvicorn serving ``tuco.asgi:create_app``, with authentication off or on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.console import BOOTSTRAP, Problems, Server
from tests.e2e.conftest import free_port
from tests.e2e.process import TucoProcess
from tests.needs import command

NOTES_SHOTS = Path("/work/notes/console-shots")
"""Where screenshots are copied too when the directory exists (the team's notes)."""


@pytest.fixture(scope="session")
def chromium_browser() -> Iterator[Any]:
    """One headless Debian chromium for the session (per worker), driven by Playwright."""
    path = command("chromium", "apt-get install -y chromium (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _environment(tmp_path: Path, auth: bool) -> dict[str, str]:
    env = {"TUCO_DATA_DIR": str(tmp_path / "data"), "TUCO_LOG_SYNC": "everysec"}
    if auth:
        secret = tmp_path / "bootstrap"
        secret.write_text(BOOTSTRAP + "\n")
        env.update(TUCO_AUTH="token", TUCO_BOOTSTRAP_TOKEN_FILE=str(secret))
    return env


def _uvicorn(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tuco.asgi:create_app",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "5",
            "--timeout-keep-alive",
            "30",
        ],
        env={**os.environ, "TUCO_LOG_LEVEL": "warning", **env},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=url, timeout=5) as http:
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)


@pytest.fixture(
    params=[("native", False), ("native", True), ("asgi", False), ("asgi", True)],
    ids=["native-open", "native-token", "uvicorn-open", "uvicorn-token"],
)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """A real server (tuco serve, or uvicorn with tuco.asgi), authentication off or on."""
    front_end, auth = request.param
    env = _environment(tmp_path, auth)
    if front_end == "native":
        process = TucoProcess(env, cwd=tmp_path)
        process.start()
        try:
            yield Server(front_end, process.url, BOOTSTRAP if auth else None)
        finally:
            process.stop_quietly()
    else:
        proc, url = _uvicorn(tmp_path, env)
        try:
            yield Server(front_end, url, BOOTSTRAP if auth else None)
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.fixture
def shots(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A directory for the test's screenshots (printed), copied to the notes' console-shots when that exists."""
    directory = tmp_path / "shots"
    directory.mkdir()
    print(f"screenshots: {directory}")
    yield directory
    if NOTES_SHOTS.is_dir():
        name = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")
        target = NOTES_SHOTS / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(directory, target)
        print(f"screenshots copied to {target}")


@pytest.fixture
def problems() -> Problems:
    """What the page must never do: script errors, dialogs, CSP violations (each test asserts it empty)."""
    return Problems()


@pytest.fixture
def new_page(chromium_browser: Any, server: Server, problems: Problems) -> Iterator[Callable[..., Any]]:
    """A factory of pages, each in a context of its own, watched by ``problems``; closed before the server stops."""
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = chromium_browser.new_context(viewport={"width": 1280, "height": 860}, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        problems.watch(page)
        return page

    yield make
    for context in contexts:
        context.close()
