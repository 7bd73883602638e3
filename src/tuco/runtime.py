"""``tuco serve``: the process lifecycle around the service and the native server.

Listen first, so ``/healthz`` answers and ``/readyz`` says "starting" while the
log replays; then serve; on SIGTERM or SIGINT stop accepting, let in-flight
requests finish within the grace period, commit and sync the log, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys

import structlog

from tuco.config import Settings
from tuco.errors import ConfigurationError, TucoError
from tuco.http.api import Phase
from tuco.http.server import NativeServer, ServerSettings, start_server
from tuco.observability import Metrics, configure_logging
from tuco.service import ReplayStats, Service

__all__ = ["EXIT_CONFIG", "EXIT_FAILURE", "EXIT_OK", "make_tls_context", "run", "serve"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

_logger = structlog.get_logger("tuco")


def make_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A server-side TLS context (TLS 1.2 or newer), or None without certificate settings."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"TLS file not found: {exc.filename}") from None
    except PermissionError as exc:
        raise ConfigurationError(f"TLS file not readable: {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"cannot load TLS certificate {settings.tls_cert_file} with key {settings.tls_key_file}: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from None
    return context


def run(settings: Settings) -> int:
    """Run the service until a stop signal; return the process exit code."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        import uvloop

        return int(uvloop.run(serve(settings)))
    except ConfigurationError as exc:
        print(f"tuco: {exc}", file=sys.stderr)
        return EXIT_CONFIG


async def serve(settings: Settings) -> int:
    """Start, serve and stop; configuration errors propagate, runtime failures return 1."""
    _logger.info("starting", config=settings.public_view())
    tls = make_tls_context(settings)
    metrics = Metrics()
    service = Service.from_settings(settings, metrics)
    server_settings = ServerSettings(
        max_body_bytes=settings.max_value_bytes,
        request_timeout=settings.request_timeout_seconds,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        max_connections=settings.max_connections,
    )
    try:
        server = await start_server(
            service.api.handle, host=settings.host, port=settings.port, ssl=tls, settings=server_settings
        )
    except OSError as exc:
        _logger.error("cannot_listen", host=settings.host, port=settings.port, error=exc.strerror or str(exc))
        return EXIT_FAILURE
    metrics.gauge("tuco_http_connections_open", "open client connections", lambda: server.connection_count)
    scheme = "https" if tls else "http"
    for host, port in server.addresses:
        _logger.info("listening", url=f"{scheme}://{_url_host(host)}:{port}", host=host, port=port)

    stop = _install_stop_signals()
    try:
        stats = await _start_or_stop(service, stop)
    except TucoError as exc:
        _logger.error("start_failed", error=exc.code, message=str(exc))
        await server.aclose(grace=0)
        await _close_quietly(service)
        return EXIT_FAILURE
    if stats is None:
        _logger.info("stopped_during_start")
        await server.aclose(grace=0)
        await _close_quietly(service)
        return EXIT_OK
    _logger.info(
        "replay_finished",
        events=stats.events,
        keys=stats.keys,
        seconds=stats.seconds,
        events_per_second=stats.events_per_second,
        **dict(service.log.describe()),
    )
    _logger.info("ready")
    signum = await stop.wait()
    _logger.info("stopping", signal=signum, grace_seconds=settings.shutdown_grace_seconds)
    await _shutdown(server, service, settings.shutdown_grace_seconds)
    _logger.info("stopped", last_sequence=service.store.last_sequence)
    return EXIT_OK


async def _start_or_stop(service: Service, stop: _StopSignal) -> ReplayStats | None:
    """Replay and start the log, unless a stop signal arrives first (returns None then)."""
    start = asyncio.ensure_future(service.start())
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if start in done:
        stopped.cancel()
        return start.result()
    start.cancel()
    with contextlib.suppress(asyncio.CancelledError, TucoError):
        await start
    return None


async def _shutdown(server: NativeServer, service: Service, grace: float) -> None:
    service.api.phase = Phase.STOPPING  # /readyz turns 503 at once, so balancers stop sending work
    await server.aclose(grace=grace)
    await service.aclose()


async def _close_quietly(service: Service) -> None:
    try:
        await service.aclose()
    except TucoError as exc:
        _logger.warning("close_failed", error=exc.code, message=str(exc))


class _StopSignal:
    """SIGTERM/SIGINT turned into something a coroutine can await."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.signum = 0

    def set(self, signum: int) -> None:
        self.signum = signum
        self._event.set()

    async def wait(self) -> int:
        await self._event.wait()
        return self.signum


def _install_stop_signals() -> _StopSignal:
    stop = _StopSignal()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set, int(signum))
    return stop


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
