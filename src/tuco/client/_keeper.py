"""What keeping a lease alive decides, apart from the thread or task that does it."""

from __future__ import annotations

import time

from tuco.client._calls import Lease
from tuco.errors import LeaseNotFoundError

__all__ = ["KeptLease"]


class KeptLease:
    """A lease being kept alive: its latest state, and whether it is lost.

    Renewals come every ttl/3, so two can fail in a row and the lease still lives.
    It is lost when the server says it ended, or when renewals kept failing until
    its last known end passed (by this machine's clock: a lock holder should stop
    acting before then).
    """

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.lost = False
        self.error: BaseException | None = None

    def interval(self) -> float:
        """Seconds until the next renewal."""
        return max(self.lease.ttl / 3.0, 0.05)

    def renewed(self, lease: Lease) -> None:
        """A keepalive succeeded."""
        self.lease = lease

    def failed(self, error: BaseException) -> bool:
        """A keepalive failed; True when the lease is lost and renewing should stop."""
        self.error = error
        if isinstance(error, LeaseNotFoundError) or time.time() * 1000 >= self.lease.expires_at:
            self.lost = True
        return self.lost
