"""A semaphore: at most ``limit`` holders at once, by the same queue as the lock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuco.client._lock import Lock
from tuco.errors import InvalidRequestError

if TYPE_CHECKING:
    from tuco.client._protocols import SessionLike

__all__ = ["Semaphore", "check_limit"]


def check_limit(limit: int) -> int:
    """A semaphore's limit: a whole number from 1 (every contender must agree on it)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidRequestError("a semaphore's limit is a whole number from 1 to 10000")
    return limit


class Semaphore(Lock):
    """``limit`` slots named ``name``: the ``limit`` oldest contenders hold one each; the others wait.

    Every contender must use the same ``limit``. ``token`` is the slot's creation revision
    (increasing, but slots overlap: it fences nothing by itself).
    """

    def __init__(self, session: SessionLike, name: str, limit: int, *, timeout: float | None = None) -> None:
        super().__init__(session, name, timeout=timeout)
        self.limit = check_limit(limit)
