"""The errors only the client raises: a session that ended, a wait that ran out, a write whose outcome is unknown.

They live with the client (exported by :mod:`tuco.client`) because no server answer
stands for them; each still has a stable ``code`` and is rooted at
:class:`~tuco.errors.TucoError`.
"""

from __future__ import annotations

from tuco.errors import ServerUnreachableError, TucoError

__all__ = ["LockTimeoutError", "OutcomeUnknownError", "SessionLostError"]


class SessionLostError(TucoError):
    """The session's lease ended (expired, revoked, or not renewed in time): what it held is no longer yours."""

    __module__ = "tuco.client"
    code = "session_lost"
    status = 0


class LockTimeoutError(TucoError):
    """A lock, semaphore or campaign was not acquired within its timeout (nothing of it is left behind)."""

    __module__ = "tuco.client"
    code = "lock_timeout"
    status = 0


class OutcomeUnknownError(ServerUnreachableError):
    """A write that is not safe to repeat was sent and no answer came: it may or may not have been applied.

    It is never retried silently (a retry of a conditional write could report a false
    412, or apply twice); read the key to learn what happened.
    """

    __module__ = "tuco.client"
    code = "outcome_unknown"
