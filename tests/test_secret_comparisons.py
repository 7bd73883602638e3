"""Secrets and their digests are compared in constant time, and what is kept of a token is its SHA-256 only.

``==`` on two byte strings returns at the first byte that differs, so its time
tells an attacker how much of a guess was right. A lint over the source finds
every ``==``/``!=`` whose operands name a secret, a digest or a credential;
each must be :func:`hmac.compare_digest` instead. (Looking a credential up in a
dict compares it only after its hash matched, with a per-process random hash
key: no timing to learn from.)
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
from pathlib import Path

from tuco.core.events import EventType
from tuco.core.tokens import Access, Grant, Permission, digest
from tuco.service import Service
from tuco.testing import MemoryLog

SRC = Path(__file__).resolve().parents[1] / "src" / "tuco"
_SECRETISH = ("sha256", "digest", "secret", "bootstrap", "credential", "authorization", "password")


def _names(node: ast.AST) -> set[str]:
    """Every identifier an expression reads: names, attributes and the functions it calls."""
    found: set[str] = set()
    for part in ast.walk(node):
        if isinstance(part, ast.Name):
            found.add(part.id.lower())
        elif isinstance(part, ast.Attribute):
            found.add(part.attr.lower())
    return found


def equality_on_secrets(source: str, filename: str = "<source>") -> list[str]:
    """``file:line`` of each ``==`` or ``!=`` comparing something that names a secret, a digest or a credential."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Compare) or not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(word in name for operand in operands for name in _names(operand) for word in _SECRETISH):
            found.append(f"{filename}:{node.lineno}")
    return found


def test_the_lint_finds_an_equality_on_a_digest() -> None:
    """The checker itself: ``==`` on a digest or a secret is found; compare_digest and a header's name are not."""
    bad = "if record.sha256 == digest(secret):\n    pass\nok = self._bootstrap != digest(credential)\n"
    good = (
        "if hmac.compare_digest(record.sha256, digest(secret)):\n    pass\n"
        "if name.lower() == b'authorization':\n    pass\n"
    )
    assert equality_on_secrets(bad) == ["<source>:1", "<source>:3"]
    assert equality_on_secrets(good) == []


def test_no_secret_digest_or_credential_is_compared_with_equality_in_the_source() -> None:
    """Across src/tuco, secrets, digests and credentials meet only in hmac.compare_digest."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        source = path.read_text()
        for place in equality_on_secrets(source, str(path.relative_to(SRC))):
            found.append(f"{place}: {source.splitlines()[int(place.rsplit(':', 1)[1]) - 1].strip()}")
    assert found == []


def test_a_token_is_kept_as_the_sha256_of_its_secret_and_nothing_else_of_it() -> None:
    """The log's record of a new token holds hashlib.sha256(secret).hexdigest(), never the secret in any encoding."""

    async def main() -> None:
        log = MemoryLog()
        service = Service(log, access=Access(True, digest(b"x" * 40)))
        await service.start()
        try:
            record, token = await service.create_token("ci", [Grant("a/", Permission.READ)])
        finally:
            await service.aclose()
        assert token is not None
        secret = token.split("_", 2)[2].encode()
        [event] = [e for e in log.events if e.type is EventType.TOKEN_CREATE]
        stored = json.loads(event.value)
        assert stored["sha256"] == hashlib.sha256(secret).hexdigest()
        assert record.sha256 == hashlib.sha256(secret).digest()
        for encoding in (secret, secret.hex().encode(), secret.upper(), token.encode()):
            assert encoding not in event.value

    asyncio.run(main())
