"""The root of tuco's errors and the header fields they carry; :mod:`tuco.errors` re-exports it."""

from __future__ import annotations

__all__ = ["RETRY_SOON", "Headers", "TucoError"]

Headers = tuple[tuple[bytes, bytes], ...]
"""Header fields an error's answer carries besides its JSON body."""
RETRY_SOON: Headers = ((b"Retry-After", b"1"),)


class TucoError(Exception):
    """Root of every error tuco raises on purpose."""

    __module__ = "tuco.errors"

    code = "internal_error"
    status = 500

    @property
    def headers(self) -> Headers:
        """The header fields its answer carries (none by default)."""
        return ()
