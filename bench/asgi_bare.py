"""A bare ASGI app: what ASGI itself costs, the ceiling tuco's ASGI app is compared against.

Served by uvicorn as tuco's app is (``--http httptools --loop uvloop``, one
worker, no access log), it answers every request with the same 64-byte body in
the two messages every ASGI response takes, and reads nothing. Whatever tuco's
app achieves as a share of this, measured in the same run, is what tuco's own
code costs behind ASGI. No tuco imports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

BODY = b"v" * 64
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-length", b"%d" % len(BODY)), (b"content-type", b"application/octet-stream")],
}
END = {"type": "http.response.body", "body": BODY}

Message = MutableMapping[str, Any]


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """Answer every HTTP request with BODY; take part in the lifespan protocol so the server starts at once."""
    if scope["type"] == "http":
        await send(START)
        await send(END)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
