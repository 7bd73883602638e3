"""A minimal HTTP responder: the throughput ceiling tuco is compared against.

It does what any Python server on this stack must do per request -- parse it
with httptools and write a response through uvloop -- and nothing else: every
request gets the same 64-byte body. Whatever tuco achieves as a share of this,
measured in the same run, is what its own code costs. No tuco imports.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import httptools
import uvloop

BODY = b"v" * 64
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


class Responder(asyncio.Protocol):
    """Answers each complete request on a keep-alive connection with RESPONSE."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(RESPONSE)


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
