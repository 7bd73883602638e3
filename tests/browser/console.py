"""Helpers of the console's browser tests: the server under test, seeding it, and what a page must never do."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

BOOTSTRAP = "bootstrap-" + secrets.token_hex(24)
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
_NETWORK = "Failed to load resource: the server responded with a status of "
"""Chromium's console line for an answer of 400 or more: the console expects some (401, 404, 412), so these are
kept apart from script errors."""

WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
window.__pwned = [];
"""
"""Installed before the page's own scripts: records CSP violations, and a place hostile content would write to."""


def key_path(key: str) -> str:
    return "/v1/key/" + quote(key, safe="")


@dataclass
class Server:
    """A server under test: its front end, its URL and, with authentication on, the admin token."""

    front_end: str
    url: str
    token: str | None

    def client(self) -> httpx.Client:
        """Another client of the server (not the browser), as an admin when authentication is on."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def seed(self, values: dict[str, bytes]) -> None:
        """Write ``values`` through the API, 16 requests at a time."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}

        async def main() -> None:
            queue = list(values.items())
            async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30) as http:

                async def worker() -> None:
                    while queue:
                        key, value = queue.pop()
                        for attempt in range(3):  # a keep-alive connection the server closed as it was reused
                            try:
                                answer = await http.put(key_path(key), content=value)
                                break
                            except (httpx.ReadError, httpx.RemoteProtocolError):
                                if attempt == 2:
                                    raise
                        assert answer.status_code == 201, answer.text

                await asyncio.gather(*(worker() for _ in range(16)))

        # Playwright's sync API runs an event loop in this thread: the writes get a thread of their own.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: asyncio.run(main())).result()


@dataclass
class Problems:
    """What a page did that it must not: script errors and warnings, dialogs, CSP violations."""

    errors: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        """Listen to ``page``: console errors and warnings, uncaught exceptions, dialogs (dismissed)."""
        page.add_init_script(WATCH_CSP)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type not in ("error", "warning"):
            return
        if message.text.startswith(_NETWORK):
            self.network.append(message.text)
        else:
            self.errors.append(f"console {message.type}: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def check(self, page: Any) -> None:
        """Fail on any script error, dialog, CSP violation or write by hostile content seen so far."""
        csp = page.evaluate("window.__csp")
        pwned = page.evaluate("window.__pwned")
        assert (self.errors, self.dialogs, csp, pwned) == ([], [], [], [])


def sign_in(page: Any, server: Server) -> None:
    """Open the console and, with authentication on, sign in with the admin token."""
    page.goto(server.url + "/ui/")
    if server.token:
        page.wait_for_selector("#signin-page:not([hidden])")
        page.fill("#token", server.token)
        page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#keys-page:not([hidden])")
