"""Settings to adapters to a :class:`~tuco.service.Service`: the only module that names a concrete log."""

from __future__ import annotations

from tuco.config import LogBackend, Settings, StateMode
from tuco.core.tokens import Access, check_bootstrap_token, digest
from tuco.errors import ConfigurationError
from tuco.observability import Metrics
from tuco.ports import TransactionLog
from tuco.service import Limits, Service
from tuco.watchers import WatchSettings

__all__ = ["access_from", "build_log", "build_service", "limits_from"]


def build_log(settings: Settings, *, follow: bool = True) -> TransactionLog:
    """The transaction log the settings ask for (twelve-factor IV: attached by configuration).

    ``follow=False`` (a serverless function) follows no other writer between its requests.
    """
    if settings.log_backend is LogBackend.POSTGRES:
        from tuco.log.postgres import PostgresTransactionLog

        url = settings.database_url.get_secret_value() if settings.database_url else None
        reads_through = settings.state is StateMode.CACHE or not follow
        return PostgresTransactionLog(
            url,
            poll_interval=settings.poll_interval_seconds,
            use_notify=settings.listen_notify and follow,
            connect_timeout=settings.database_connect_timeout_seconds,
            write_timeout=settings.database_write_timeout_seconds,
            max_pending_bytes=settings.log_max_pending_bytes,
            replay="expiring" if reads_through else "all",
            follow=follow,
        )
    from tuco.log.file import FileTransactionLog

    return FileTransactionLog(
        settings.log_path,
        sync=settings.log_sync,
        max_pending_bytes=settings.log_max_pending_bytes,
        compact_min_bytes=settings.log_compact_min_bytes,
        compact_ratio=settings.log_compact_ratio,
    )


def limits_from(settings: Settings) -> Limits:
    """The request size limits of the settings."""
    return Limits(
        max_key_bytes=settings.max_key_bytes,
        max_value_bytes=settings.max_value_bytes,
        max_buffered_bytes=settings.body_budget_bytes,
        max_ttl_ms=settings.max_ttl_seconds * 1000,
        max_leases=settings.max_leases,
        max_keys_per_lease=settings.max_keys_per_lease,
        max_leases_per_principal=settings.max_leases_per_principal or 0,
        max_store_bytes=settings.max_store_bytes,
        max_store_keys=settings.max_store_keys,
        snapshot_max_bytes=settings.snapshot_max_bytes,
        max_txn_ops=settings.max_txn_ops,
        max_txn_bytes=settings.max_txn_bytes,
    )


def access_from(settings: Settings) -> Access:
    """Who may do what: TUCO_AUTH with the bootstrap token; ConfigurationError (one line, no secret) if unusable."""
    if settings.auth != "token":
        return Access()
    token = _bootstrap_token(settings)
    if token is None:
        raise ConfigurationError(
            "invalid configuration: TUCO_AUTH=token needs an admin token to start from: set "
            "TUCO_BOOTSTRAP_TOKEN_FILE (or TUCO_BOOTSTRAP_TOKEN) to at least 32 random characters"
        )
    weak = check_bootstrap_token(token)
    where = "TUCO_BOOTSTRAP_TOKEN_FILE" if settings.bootstrap_token_file is not None else "TUCO_BOOTSTRAP_TOKEN"
    if weak is not None:
        raise ConfigurationError(f"invalid configuration: {where}: the bootstrap token is refused: {weak}")
    return Access(True, digest(token.encode("ascii")), settings.metrics_public)


def _bootstrap_token(settings: Settings) -> str | None:
    if settings.bootstrap_token is not None:
        return settings.bootstrap_token.get_secret_value()
    path = settings.bootstrap_token_file
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            raw = file.read(4096)
    except OSError as exc:
        raise ConfigurationError(
            f"invalid configuration: TUCO_BOOTSTRAP_TOKEN_FILE: cannot read {path}: {exc.strerror or exc}"
        ) from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigurationError(
            "invalid configuration: TUCO_BOOTSTRAP_TOKEN_FILE: the bootstrap token is refused: "
            "it may hold only letters, digits and - . _ ~ + / (and trailing =)"
        ) from None
    return text.removesuffix("\n").removesuffix("\r")


def build_service(settings: Settings, metrics: Metrics | None = None, *, serverless: bool = False) -> Service:
    """The service over the log the settings ask for, with its limits and history bound.

    ``TUCO_STATE=cache`` gives one that reads through (:class:`~tuco.cache.ReadThrough`: no full copy);
    ``serverless`` one that follows no feed either (PostgreSQL only).
    """
    watching = WatchSettings(
        max_watchers=settings.watch_max_watchers,
        max_watchers_per_principal=settings.watch_max_watchers_per_principal or 0,
        max_lag_events=settings.watch_max_lag_events,
        heartbeat_seconds=settings.watch_heartbeat_seconds,
        allow_origins=settings.allowed_origins,
    )
    access = access_from(settings)
    if settings.state is StateMode.CACHE or serverless:
        if settings.log_backend is not LogBackend.POSTGRES:
            raise ConfigurationError("a serverless function needs TUCO_LOG_BACKEND=postgres")
        from tuco.cache import ReadThrough
        from tuco.log._pg_reads import PostgresStateReader

        url = settings.database_url.get_secret_value() if settings.database_url else None
        reader = PostgresStateReader(url, timeout=settings.database_write_timeout_seconds)
        log = build_log(settings, follow=not serverless)
        reads = ReadThrough(
            log,
            reader,
            cache_bytes=settings.cache_max_bytes,
            follow=not serverless,
            max_staleness=settings.cache_max_staleness_seconds,
        )
        return Service(log, limits_from(settings), metrics, watch_settings=watching, access=access, reads=reads)
    log = build_log(settings)
    service = Service(
        log,
        limits_from(settings),
        metrics,
        history_bytes=settings.history_max_bytes,
        history_age_ms=int(settings.history_retain_seconds * 1000),
        watch_settings=watching,
        access=access,
    )
    from tuco.log._compaction import token_table
    from tuco.log.file import FileTransactionLog

    if isinstance(log, FileTransactionLog) and log.entries is None:
        log.entries = service.store.entries  # what online compaction rewrites the log from
        log.expiry_state = service.store.expiry_state  # ...with the deadlines and leases
        log.entry_bytes = service.store.entry_bytes  # ...and the size it will be, known without a pass
        store = service.store
        log.token_state = lambda: token_table(store, log.now_ms())  # ...and the live tokens
    return service
