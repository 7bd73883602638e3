"""Getting data into a server before measuring it, and the disk's own fsync cost.

Keys follow one scheme everywhere ("key-" + 12 digits = 16 bytes), the same as
bench/wrk/common.lua, so preloaded keys are exactly the ones wrk asks for.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["build_log", "fsync_latency", "key", "preload_http"]


def key(i: int) -> str:
    """The i-th benchmark key (16 bytes)."""
    return f"key-{i:012d}"


def build_log(path: Path, count: int, value_bytes: int, by: str = "") -> int:
    """Write a tuco log of ``count`` PUTs of distinct keys directly; return its size.

    Far faster than a million HTTP requests, and it exercises exactly what
    start-up replay reads. Imports tuco only here, so the rest of the harness
    (and the reference server) runs without it. With ``by``, every record is
    attributed to that principal (record kind 18), as a server writes them.
    """
    from tuco.core.codec import encode_event, encode_header, encode_record
    from tuco.core.events import Event, EventType
    from tuco.core.origin import new_origin

    value = b"v" * value_bytes
    put = EventType.PUT
    origin = new_origin(by, int(time.time() * 1000)) if by else None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(encode_header())
        chunk = 50_000
        for start in range(0, count, chunk):
            stop = min(count, start + chunk)
            if origin is None:
                f.write(b"".join(encode_record(i + 1, put, key(i), value) for i in range(start, stop)))
            else:
                events = (Event(i + 1, put, key(i), value, origin=origin) for i in range(start, stop))
                f.write(b"".join(map(encode_event, events)))
    return path.stat().st_size


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response with a Content-Length body; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _preload_worker(
    port: int, indices: Iterator[int], value: bytes, tls: ssl.SSLContext | None, header: bytes = b""
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        for i in indices:
            writer.write(
                b"PUT /v1/key/%s HTTP/1.1\r\nHost: bench\r\n%bContent-Length: %d\r\n\r\n%s"
                % (key(i).encode(), header, len(value), value)
            )
            status = await _read_response(reader)
            if status not in (200, 201, 204):
                raise RuntimeError(f"preload PUT {key(i)} answered {status}")
    finally:
        writer.close()


def preload_http(
    url: str,
    count: int,
    value_bytes: int,
    *,
    concurrency: int = 32,
    tls: ssl.SSLContext | None = None,
    timeout: float = 120.0,
    header: str = "",
) -> float:
    """PUT keys 0..count-1 through the API over ``concurrency`` connections; return seconds.

    Through the API rather than the log file so that it works for every log
    backend, PostgreSQL included. A bare client that writes each request in
    one piece: a general HTTP client writing headers and body separately
    meets Nagle and delayed ACKs and loads 100 times slower.
    """
    port = int(url.rsplit(":", 1)[1])
    indices = iter(range(count))
    value = b"v" * value_bytes

    async def run() -> None:
        line = f"{header}\r\n".encode() if header else b""
        workers = (_preload_worker(port, indices, value, tls, line) for _ in range(concurrency))
        await asyncio.wait_for(asyncio.gather(*workers), timeout)

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def fsync_latency(directory: Path, count: int = 1000, size: int = 4096) -> dict[str, float]:
    """p50/p99/max milliseconds of an appending 4 KiB ``write`` + ``fdatasync``.

    This bounds what any durable commit can cost on this disk, so the durable
    PUT latency target is stated relative to it.
    """
    path = directory / "fsync-probe"
    block = os.urandom(size)
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    return {
        "count": count,
        "bytes": size,
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        "max_ms": round(samples[-1], 3),
    }
