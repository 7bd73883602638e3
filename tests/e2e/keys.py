"""How tests spell keys in URLs."""

from __future__ import annotations

from urllib.parse import quote


def key_path(key: str, prefix: str = "/v1/key/") -> str:
    """Percent-encode every reserved character, dots included, so no client normalizes the path."""
    return prefix + quote(key, safe="").replace(".", "%2E")
