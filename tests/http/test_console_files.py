"""The console's page and files: served by both front ends from the package, versioned, cached, under a strict CSP."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import re
from collections.abc import Awaitable, Callable

import httpx

from tests.http.secured import FRONT_ENDS, secured_service, served_secured
from tuco.http.handlers.ui import ASSETS, CSP, versioned

Check = Callable[[httpx.AsyncClient], Awaitable[None]]
SAFE = {
    "content-security-policy": CSP.decode(),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def packaged(name: str) -> bytes:
    return importlib.resources.files("tuco.http").joinpath("ui", name).read_bytes()


def run(front_end: str, check: Check) -> None:
    """``check`` against a server with authentication on: the console's files need no token."""

    async def main() -> None:
        service = secured_service()
        async with served_secured(front_end, service) as client:
            await check(client)

    asyncio.run(main())


def test_the_csp_allows_nothing_inline_nothing_foreign_and_no_framing() -> None:
    """The policy's directives, exactly: self only, no inline script or style, no objects, no frame ancestors."""
    assert CSP.decode().split("; ") == [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    """index.html has no inline script, style or on* handler; console.js writes no HTML and evals nothing."""
    page = packaged("index.html").decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert re.findall(r"\son[a-z]+\s*=", page) == []
    assert re.findall(r"\sstyle\s*=|<style", page) == []
    script = packaged("console.js").decode()
    assert re.findall(r"\.(?:innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|\beval\(", script) == []


def test_a_versioned_name_is_the_first_12_hex_digits_of_the_sha256() -> None:
    """console.js becomes console.<hash>.js: a changed file gets a new name, so a year's caching is safe."""
    content = b"console.log(1)"
    assert versioned("console.js", content) == f"console.{hashlib.sha256(content).hexdigest()[:12]}.js"
    assert versioned("console.js", content + b" ") != versioned("console.js", content)


@FRONT_ENDS
def test_the_page_names_each_file_by_version_and_each_is_served_with_long_caching(front_end: str) -> None:
    """/ui/ (and / and /ui): no-cache and the safety headers; each file by its versioned name: a year, immutable."""

    async def check(client: httpx.AsyncClient) -> None:
        page = await client.get("/ui/")
        assert (page.status_code, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert {name: page.headers[name] for name in SAFE} == SAFE
        assert page.headers["cache-control"] == "no-cache"
        for path in ("/", "/ui"):
            same = await client.get(path)
            assert (same.status_code, same.content) == (200, page.content)
        for name, content_type in ASSETS.items():
            served = versioned(name, packaged(name))
            assert f'"/ui/{served}"' in page.text
            answer = await client.get(f"/ui/{served}")
            assert (answer.status_code, answer.content) == (200, packaged(name))
            assert answer.headers["content-type"] == content_type.decode()
            assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert {header: answer.headers[header] for header in SAFE} == SAFE
            head = await client.head(f"/ui/{served}")
            assert (head.status_code, head.content, head.headers["content-length"]) == (
                200,
                b"",
                str(len(packaged(name))),
            )
            stale = await client.get(f"/ui/{name}")
            assert (stale.status_code, stale.json()["error"]) == (404, "not_found")
        assert (await client.get("/ui/a/b.js")).status_code == 401  # no route: a stranger learns nothing of paths
        assert (await client.post("/ui/")).status_code == 405

    run(front_end, check)
