"""Tokens in the file log: online compaction keeps live ones, and the bootstrap token's settings are checked."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.http.test_auth import secret_of
from tuco.assembly import access_from, build_service
from tuco.config import load_settings
from tuco.core.tokens import Grant, Permission, digest
from tuco.errors import ConfigurationError

STRONG = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_an_online_compaction_keeps_live_tokens_and_drops_revoked_and_expired_ones(tmp_path: Path) -> None:
    """After compactions under load, a restart knows the live token only; its bytes hold no secret."""
    settings = load_settings(data_dir=tmp_path, log_compact_min_bytes=4096, log_compact_ratio=1.5)

    async def first() -> tuple[str, str]:
        service = build_service(settings)
        await service.start()
        live, token = await service.create_token("live", [Grant("a/", Permission.WRITE)])
        gone, _ = await service.create_token("gone", [Grant("a/", Permission.READ)])
        await service.revoke_token(gone.id)
        expiring, _ = await service.create_token(
            "expiring", [Grant("a/", Permission.READ)], expires_at=int(time.time() * 1000) + 200
        )
        await asyncio.sleep(0.3)
        log = service.log
        for _ in range(40):  # enough overwrites of one key for several compactions
            await asyncio.gather(*(service.put(f"k{i}", b"x" * 200) for i in range(20)))
        assert getattr(log, "compactions", 0) >= 1
        await service.aclose()
        assert token is not None and expiring.id
        return live.id, token

    live_id, token = asyncio.run(first())
    data = (tmp_path / "tuco.log").read_bytes()
    assert secret_of(token).encode() not in data
    assert b"gone" not in data and b"expiring" not in data  # compaction dropped them

    async def second() -> None:
        service = build_service(settings)
        await service.start()
        try:
            assert [record.id for record in service.store.tokens] == [live_id]
            _, _, secret = token.split("_", 2)
            assert service.store.tokens.verify(live_id, secret.encode(), 0) is not None
        finally:
            await service.aclose()

    asyncio.run(second())


def test_the_bootstrap_file_may_end_in_a_newline_or_crlf(tmp_path: Path) -> None:
    """A secret file written by echo or on Windows works: one trailing LF or CRLF is not part of the token."""
    for ending in ("", "\n", "\r\n"):
        secret = tmp_path / "bootstrap"
        secret.write_bytes((STRONG + ending).encode())
        access = access_from(load_settings(auth="token", bootstrap_token_file=secret))
        assert access.enabled and access.bootstrap_sha256 == digest(STRONG.encode())


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "0 characters"),
        (b"\n", "0 characters"),
        (STRONG.encode() + b"\n\n", "may hold only"),
        (b"\xff" * 40, "may hold only"),
        (b" " + STRONG.encode(), "may hold only"),
    ],
)
def test_an_unusable_bootstrap_file_is_one_configuration_error(tmp_path: Path, content: bytes, fragment: str) -> None:
    """Empty, two newlines, not ASCII, a leading space: refused naming the setting, the content never shown."""
    secret = tmp_path / "bootstrap"
    secret.write_bytes(content)
    with pytest.raises(ConfigurationError) as refused:
        access_from(load_settings(auth="token", bootstrap_token_file=secret))
    message = str(refused.value)
    assert fragment in message and "TUCO_BOOTSTRAP_TOKEN_FILE" in message and STRONG not in message


def test_the_start_up_line_shows_the_bootstrap_token_as_stars() -> None:
    """The effective configuration logged at start names the setting, never its value."""
    import json

    view = load_settings(auth="token", bootstrap_token=STRONG).public_view()
    assert view["bootstrap_token"] == "***" and STRONG not in json.dumps(view, default=str)
