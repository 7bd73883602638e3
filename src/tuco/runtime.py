"""``tuco serve``: the process lifecycle around the service and the native server.

Start-up goes settings, TLS context, ``log.open()`` (lock the file, reach the
database), bind, replay, ready: whatever can refuse to start does so before
the port is bound, so a balancer never sees a process that will not serve.
The replay runs with the port open, so ``/healthz`` answers and ``/readyz``
says "starting" meanwhile. On SIGTERM or SIGINT: answer /readyz 503, keep serving
for the drain time (0 by default) so balancers take us out, stop accepting, let
in-flight requests finish within the grace period, commit and sync the log, exit 0.

Every start-up failure is one ``tuco: ...`` line on stderr (for the person at
the terminal) and one ``start_failed`` JSON line (for the log pipeline), then
exit 2 for configuration, 1 for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import ssl
import sys
import time
from pathlib import Path

import structlog

from tuco import __version__, collector
from tuco._build import build as installed_build
from tuco.assembly import build_service
from tuco.config import LogBackend, Settings, unknown_variables
from tuco.errors import ConfigurationError, TucoError
from tuco.http.api import KeyValueAPI
from tuco.http.observer import RequestObserver
from tuco.http.server import NativeServer, ServerSettings, start_server
from tuco.observability import Metrics, configure_logging
from tuco.service import Phase, ReplayStats, Service

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "check_data_dir",
    "check_exposure",
    "is_loopback",
    "make_tls_context",
    "run",
    "serve",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

_logger = structlog.get_logger("tuco")


def make_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A server-side TLS context (TLS 1.2 or newer), or None without certificate settings.

    Raises :class:`ConfigurationError` naming the setting and the path of a file that is missing, unreadable
    or not a certificate and key that belong together.
    """
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    cert, key = settings.tls_cert_file, settings.tls_key_file
    _check_readable("TUCO_TLS_CERT_FILE", cert)
    _check_readable("TUCO_TLS_KEY_FILE", key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or "unusable"
        raise ConfigurationError(
            f"invalid configuration: TUCO_TLS_CERT_FILE {cert} with TUCO_TLS_KEY_FILE {key}: {reason}"
        ) from None
    client_ca = settings.tls_client_ca_file
    if client_ca is not None:
        _check_readable("TUCO_TLS_CLIENT_CA_FILE", client_ca)
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or "not a PEM CA bundle"
            raise ConfigurationError(f"invalid configuration: TUCO_TLS_CLIENT_CA_FILE {client_ca}: {reason}") from None
        context.verify_mode = ssl.CERT_REQUIRED  # no certificate, or one from another CA: refused at the handshake
        # No session resumption: a resumed session skips the certificate check, so a session (TLS 1.3 ticket
        # or TLS 1.2 session id) could carry a certificate past its notAfter. Each connection verifies anew;
        # open connections are held to the notAfter by the connection itself.
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
    return context


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to listen beyond loopback with authentication left unset (Redis's "protected mode", made explicit)."""
    if settings.auth is None and not is_loopback(settings.host):
        raise ConfigurationError(
            f"refusing to listen on {settings.host} without authentication: set TUCO_AUTH=token with "
            "TUCO_BOOTSTRAP_TOKEN_FILE (or TUCO_BOOTSTRAP_TOKEN), or TUCO_AUTH=none to serve everyone who can "
            "reach the port"
        )


def _check_readable(setting: str, path: Path) -> None:
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ConfigurationError(f"invalid configuration: {setting}: no such file: {path}") from None
    except OSError as exc:
        raise ConfigurationError(
            f"invalid configuration: {setting}: cannot read {path}: {exc.strerror or exc}"
        ) from None


def check_data_dir(settings: Settings) -> None:
    """Refuse a ``TUCO_DATA_DIR`` that is, or lies under, something other than a directory (file backend only)."""
    if settings.log_backend is not LogBackend.FILE:
        return
    path = settings.data_dir
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            if not candidate.is_dir():
                raise ConfigurationError(f"invalid configuration: TUCO_DATA_DIR: not a directory: {candidate}")
            return


def run(settings: Settings) -> int:
    """Run the service until a stop signal; return the process exit code."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        import uvloop

        return int(uvloop.run(serve(settings)))
    except ConfigurationError as exc:
        return _start_failed(exc.code, str(exc), EXIT_CONFIG)


def _start_failed(error: str, message: str, exit_code: int) -> int:
    """Report a start-up failure once for people (stderr) and once for the log pipeline (stdout)."""
    _logger.error("start_failed", error=error, message=message, exit_code=exit_code)
    print(f"tuco: {message}", file=sys.stderr, flush=True)
    return exit_code


async def serve(settings: Settings) -> int:
    """Start, serve and stop; configuration errors propagate, runtime failures return 1."""
    _logger.info("starting", config=settings.public_view())
    for variable, nearest in unknown_variables(os.environ):
        hint = f"; did you mean {nearest}?" if nearest else ""
        _logger.warning(
            "unknown_setting", variable=variable, nearest=nearest, message=f"{variable} is not a setting{hint}"
        )
    check_data_dir(settings)
    check_exposure(settings)
    tls = make_tls_context(settings)
    metrics = Metrics()
    service = build_service(settings, metrics)
    if settings.auth == "none":
        _logger.warning(
            "authentication_disabled",
            host=settings.host,
            message="TUCO_AUTH=none: anyone who can reach the port can read, write and delete every key",
        )
    try:
        await service.log.open()
    except TucoError as exc:
        await _close_quietly(service)
        return _start_failed(exc.code, str(exc), EXIT_FAILURE)
    server_settings = ServerSettings(
        max_body_bytes=settings.max_value_bytes,
        max_txn_body_bytes=service.limits.txn_body_bytes,
        request_timeout=settings.request_timeout_seconds,
        keepalive_timeout=settings.keepalive_timeout_seconds,
        max_connections=settings.max_connections,
        # By default, always room for one largest transaction's body too.
        max_buffered_bytes=settings.body_budget_bytes
        if settings.max_buffered_bytes is not None
        else max(settings.body_budget_bytes, service.limits.txn_body_bytes),
        stream_backlog_bytes=settings.watch_max_backlog_bytes,
        max_stream_bytes=settings.watch_max_buffered_bytes,
    )
    try:
        server = await start_server(
            KeyValueAPI(service).handle,
            host=settings.host,
            port=settings.port,
            ssl=tls,
            settings=server_settings,
            observer=RequestObserver(metrics, access_log=settings.access_log),
        )
    except OSError as exc:
        await _close_quietly(service)
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        where = f"{_url_host(settings.host)}:{settings.port}"
        return _start_failed("cannot_listen", f"cannot listen on {where}: {reason}", EXIT_FAILURE)
    metrics.gauge("tuco_http_connections_open", "open client connections", lambda: server.connection_count)
    metrics.gauge(
        "tuco_http_body_bytes_reserved", "request body bytes being received", lambda: server.body_bytes_reserved
    )
    metrics.gauge(
        "tuco_watch_buffered_bytes",
        "unsent bytes all watch streams hold, a shared frame once (TUCO_WATCH_MAX_BUFFERED_BYTES bounds it)",
        lambda: server.streams.total,
    )
    metrics.gauge(
        "tuco_watchers_stalled",
        "watch streams whose clients stopped taking what is sent (at TUCO_WATCH_MAX_BACKLOG_BYTES)",
        lambda: server.streams.stalled,
    )
    metrics.counter(
        "tuco_watchers_cut_off",
        "watch streams cut off because their clients stopped reading while the streams held too much",
        lambda: server.streams.cut_off,
    )
    scheme = "https" if tls else "http"
    for host, port in server.addresses:
        _logger.info(
            "listening",
            url=f"{scheme}://{_url_host(host)}:{port}",
            host=host,
            port=port,
            version=__version__,
            build=installed_build(),
        )

    stop = _install_stop_signals()
    try:
        stats = await _start_or_stop(service, stop)
    except TucoError as exc:
        await server.aclose(grace=0)
        await _close_quietly(service)
        return _start_failed(exc.code, str(exc), EXIT_FAILURE)
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
    collector.freeze_start_up()
    _logger.info("ready")
    signum = await stop.wait()
    _logger.info(
        "stopping",
        signal=signum,
        drain_seconds=settings.shutdown_drain_seconds,
        grace_seconds=settings.shutdown_grace_seconds,
    )
    await _shutdown(server, service, stop, settings.shutdown_drain_seconds, settings.shutdown_grace_seconds)
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


async def _shutdown(server: NativeServer, service: Service, stop: _StopSignal, drain: float, grace: float) -> None:
    service.phase = Phase.STOPPING  # /readyz turns 503 at once, so balancers stop sending work
    service.end_watches()  # open watch streams and long polls end now, not at the end of the grace period
    # Each step says how long it took: an orchestrator's SIGKILL (its grace below ours) leaves these lines as
    # the only account of where the stop spent its time.
    started = time.monotonic()
    if drain > 0:
        # Closing at once races the balancer: a request it sends on a kept-alive connection as we close that
        # connection is lost to its client (HAProxy then drops the client's connection unanswered). Served
        # normally until the balancer's health checks see the 503, nothing is in that race any more.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                await stop.again()
        _logger.info("drained", seconds=round(time.monotonic() - started, 3))
        started = time.monotonic()
    await server.aclose(grace=grace)
    _logger.info("connections_closed", seconds=round(time.monotonic() - started, 3))
    started = time.monotonic()
    await service.aclose()
    _logger.info("log_closed", seconds=round(time.monotonic() - started, 3))


async def _close_quietly(service: Service) -> None:
    try:
        await service.aclose()
    except TucoError as exc:
        _logger.warning("close_failed", error=exc.code, message=str(exc))


class _StopSignal:
    """SIGTERM/SIGINT turned into something a coroutine can await."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._again = asyncio.Event()
        self.signum = 0

    def set(self, signum: int) -> None:
        if self._event.is_set():
            self._again.set()
            return
        self.signum = signum
        self._event.set()

    async def wait(self) -> int:
        await self._event.wait()
        return self.signum

    async def again(self) -> None:
        """Until a second signal: the operator who presses Ctrl-C twice wants it to stop now."""
        await self._again.wait()


def _install_stop_signals() -> _StopSignal:
    stop = _StopSignal()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set, int(signum))
    return stop


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
