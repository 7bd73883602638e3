"""Write settling: how a write's outcome becomes its answer (201/200, 412 with the current ETag, a log refusal)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

from tuco.core.events import Event
from tuco.errors import LogClosedError, LogError, PreconditionFailedError, TucoError
from tuco.http.answers import error_answer, refusal
from tuco.http.messages import Deferred, Response, Settling
from tuco.service import Service

__all__ = ["Done", "Writes", "answer_when_written", "write_refused"]

Done = Callable[[Event], Response]
"""How a committed event becomes the answer to the write that made it."""


def write_refused(error: TucoError, doing: str) -> Response:
    """A write refused before it reached the log: a client's mistake answered as such, or a log refusal."""
    if isinstance(error, LogError):
        return refusal(error, doing)
    return error_answer(error)


def answer_when_written(written: Awaitable[Event], settle: Callable[[Settling], Response]) -> Deferred:
    """The answer to a write: ``settle`` runs on its future once the log decided.

    A log that waits for room first hands back a coroutine (and any awaitable that is not settled
    through a callback becomes one): it becomes a task, still one Deferred.
    """
    if hasattr(written, "add_done_callback"):  # a future, or the group commit's Written
        return Deferred(cast(Settling, written), settle)
    return Deferred(asyncio.ensure_future(written), settle)


class Writes:
    """The settling of one service's writes; the API keeps its bound methods (no bound method made per write)."""

    __slots__ = ("service",)

    def __init__(self, service: Service) -> None:
        self.service = service

    def settle_put(self, written: Settling) -> Response:
        """201 with the new ETag, or why the write was not stored."""
        try:
            sequence = written.result()[0]
        except (Exception, asyncio.CancelledError):
            return self.not_written(written, "not stored")
        return Response(201, b"", None, (), sequence, sequence)

    def settle_delete(self, written: Settling) -> Response:
        """200 with the new revision, or why the delete was not recorded."""
        try:
            sequence = written.result()[0]
        except (Exception, asyncio.CancelledError):
            return self.not_written(written, "not deleted")
        return Response(200, b"", None, (), None, sequence)

    def not_written(self, written: Settling, doing: str) -> Response:
        if written.cancelled():
            return refusal(LogClosedError("the write was cancelled"), doing)
        error = written.exception()
        if isinstance(error, PreconditionFailedError):
            return self.failed(error)
        if isinstance(error, TucoError):
            return refusal(error, doing)
        raise RuntimeError("the log failed a write with an unexpected error") from error  # answered 500, logged

    def failed(self, error: PreconditionFailedError) -> Response:
        """412 with the key's current ETag (none when it is absent) and the store's revision (RFC 9110 13.1)."""
        return error_answer(error, error.current or None, self.service.revision)

    async def answer_lease_write(self, written: Awaitable[Event], done: Done, doing: str) -> Response:
        """The answer to a write with a deadline or on a lease, once the log decided."""
        try:
            event = await written
        except PreconditionFailedError as exc:
            return self.failed(exc)
        except LogError as exc:
            return refusal(exc, doing)
        except TucoError as exc:  # no such lease, a limit
            return error_answer(exc)
        return done(event)
