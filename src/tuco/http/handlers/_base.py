"""What every handler is handed: the :class:`Context` of one API (its service, metrics, watch frames, read path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tuco.http import sse
from tuco.http.handlers._writes import Writes
from tuco.http.messages import Answer, Headers, Request, Response
from tuco.observability import Metrics
from tuco.service import Service

__all__ = ["Context", "Handler", "settled"]


class Context:
    """One API's handlers' shared state: they call only :class:`~tuco.service.Service` methods through it.

    ``read`` and ``list_page`` are the read paths, chosen once: a read-through service
    (TUCO_STATE=cache, serverless) answers misses and listings from the database, so a
    full replica's reads pay nothing for it.
    """

    __slots__ = ("frames", "list_page", "metrics", "read", "service", "writes")

    def __init__(
        self,
        service: Service,
        metrics: Metrics | None,
        read: Callable[[str, Headers], Response | Awaitable[Response]],
        list_page: Callable[[str, str | None, int, int | None, bool], Response | Awaitable[Response]],
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.read = read
        self.list_page = list_page
        self.frames = sse.FrameCache()
        self.writes = Writes(service)


Handler = Callable[[Context, Request, bytes], Answer]
"""A route's handler: the context, the request and the path's segment after the route's prefix."""


async def settled(answer: Response | Awaitable[Response]) -> Response:
    """The response of an answer that is one now or once awaited (a read-through service's reads)."""
    return answer if isinstance(answer, Response) else await answer
