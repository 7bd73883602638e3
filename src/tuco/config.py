"""Configuration from ``TUCO_*`` environment variables (twelve-factor III), mirrored by ``tuco serve`` flags."""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tuco.errors import ConfigurationError
from tuco.log.file import SyncMode
from tuco.log.redact import check_database_url, redact_dsn

__all__ = [
    "BUILD_VARIABLES",
    "CLIENT_VARIABLES",
    "LogBackend",
    "Settings",
    "StateMode",
    "load_settings",
    "unknown_variables",
]

LOG_FILE_NAME = "tuco.log"


class LogBackend(enum.StrEnum):
    """Where the transaction log lives."""

    FILE = "file"
    POSTGRES = "postgres"


class StateMode(enum.StrEnum):
    """What a replica keeps in memory."""

    FULL = "full"
    CACHE = "cache"


class Settings(BaseSettings):
    """Every setting, its default and its bounds. Field descriptions feed ``--help`` and the configuration page."""

    model_config = SettingsConfigDict(env_prefix="TUCO_", extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address to listen on; loopback unless asked otherwise.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0 picks a free one).")
    data_dir: Path = Field(Path("data"), description="Directory of the file transaction log.")
    log_backend: LogBackend = Field(LogBackend.FILE, description="Transaction log backend: file or postgres.")
    log_sync: SyncMode = Field(SyncMode.ALWAYS, description="always: fsync before acknowledging; everysec: relaxed.")
    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:password@host:port/database, reserved characters "
        "percent-encoded) for the postgres backend; unset means the libpq PG* variables.",
    )
    database_url_file: Path | None = Field(
        None,
        description="A file holding TUCO_DATABASE_URL (surrounding whitespace ignored): for container secrets, "
        "so the password is in no environment variable. Not with TUCO_DATABASE_URL.",
    )
    max_key_bytes: int = Field(1024, ge=1, le=65536, description="Largest key, in UTF-8 bytes.")
    max_value_bytes: int = Field(1 << 20, ge=0, le=1 << 30, description="Largest value, in bytes.")
    max_store_bytes: int = Field(
        1 << 30,
        ge=0,
        le=1 << 44,
        description="full state: bytes the store may hold (keys' UTF-8, values, 240 per key); a write that would "
        "grow it past this is 507 store_full (0: no bound).",
    )
    max_store_keys: int = Field(
        10_000_000,
        ge=0,
        le=1 << 40,
        description="full state: keys the store may hold; a new key past this is 507 store_full (0: no bound).",
    )
    snapshot_max_bytes: int = Field(
        256 << 20,
        ge=1 << 20,
        le=1 << 40,
        description="full state: bytes a running snapshot (GET /v1/snapshot) may keep of the keys written while it "
        "streams (their state at its revision, about 240 bytes plus key and old value each); past it, it is abandoned.",
    )
    max_txn_ops: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Compares and operations of one POST /v1/txn, both branches together; more is 413 txn_ops_limit.",
    )
    max_txn_bytes: int = Field(
        8 << 20,
        ge=1,
        le=1 << 30,
        description="Keys' and values' bytes of one POST /v1/txn; more is 413 txn_bytes_limit (its JSON body is "
        "also bounded by the request body limit, TUCO_MAX_VALUE_BYTES).",
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain; with the key file, HTTPS only.")
    tls_key_file: Path | None = Field(None, description="PEM private key of the certificate.")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle: clients must present a certificate it signed (mutual TLS; tuco serve only).",
    )
    auth: Literal["token", "none"] | None = Field(
        None,
        description="token: every request but /healthz needs a token or a granted client certificate; none: open "
        "(say so to listen beyond loopback); unset: open on loopback, refused elsewhere.",
    )
    bootstrap_token: SecretStr | None = Field(
        None,
        description="With TUCO_AUTH=token: an admin token on every key (at least 32 random characters of "
        "A-Z a-z 0-9 - . _ ~ + /), sent as Authorization: Bearer <it>.",
    )
    bootstrap_token_file: Path | None = Field(
        None, description="A file holding the bootstrap token (a trailing newline is ignored): for container secrets."
    )
    metrics_public: bool = Field(False, description="With TUCO_AUTH=token: serve /metrics without a token.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Least severe event logged.")
    log_format: Literal["json", "console"] = Field("json", description="json lines, or console for people.")
    access_log: bool = Field(
        False,
        description="Log one 'access' line per answered request (method, path, status, time, X-Request-Id); "
        "every response then carries an X-Request-Id.",
    )
    shutdown_grace_seconds: float = Field(10.0, ge=0, le=3600, description="Time in-flight requests get on SIGTERM.")
    shutdown_drain_seconds: float = Field(
        0.0,
        ge=0,
        le=600,
        description="On SIGTERM, first keep serving this long with /readyz answering 503, so a balancer that polls "
        "it takes the replica out before its connections close (a second signal ends the wait).",
    )
    request_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="Longest time to receive one request.")
    keepalive_timeout_seconds: float = Field(5.0, gt=0, le=3600, description="Idle keep-alive connections close after.")
    max_connections: int = Field(
        1024, ge=1, le=1_000_000, description="Open connections (TLS handshakes included) beyond this are refused."
    )
    max_buffered_bytes: int | None = Field(
        None,
        ge=1,
        le=1 << 40,
        description=(
            "Request bodies being received, all connections together; over it new bodies get 503 "
            "(unset: the larger of 64 MiB and TUCO_MAX_VALUE_BYTES)."
        ),
    )
    log_max_pending_bytes: int = Field(
        64 << 20, ge=1 << 16, le=1 << 34, description="Writes queued for the log before writers wait."
    )
    log_compact_min_bytes: int = Field(
        64 << 20, ge=0, le=1 << 50, description="file: compact the log online once it is this big (0: never)."
    )
    log_compact_ratio: float = Field(
        2.0, gt=1, le=1000, description="file: ...and is also this many times the live data's size."
    )
    history_max_bytes: int = Field(
        32 << 20,
        ge=0,
        le=1 << 40,
        description="Bytes of recent changes kept in memory: pinned listings and watchers resume from them.",
    )
    history_retain_seconds: float = Field(
        0.0,
        ge=0,
        le=10 * 365 * 86400,
        description="Changes made this long before the newest are dropped from the history too (0: bytes only).",
    )
    poll_interval_seconds: float = Field(
        0.5, gt=0, le=3600, description="postgres: how often a replica polls for others' writes."
    )
    listen_notify: bool = Field(True, description="postgres: wake on LISTEN/NOTIFY (turn off behind poolers).")
    database_connect_timeout_seconds: float = Field(
        30.0, gt=0, le=86400, description="postgres: give up starting after this long without the database."
    )
    database_write_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="postgres: writes retry a lost database until it has been out of reach this long "
        "(from the first failure), then answer 503; while it stays away, after one try.",
    )

    state: StateMode = Field(
        StateMode.FULL,
        description="full: every key in memory; cache (postgres only): read keys through a bounded LRU "
        "from the database, nothing loaded at start.",
    )
    cache_max_bytes: int = Field(
        64 << 20,
        ge=0,
        le=1 << 40,
        description="cache: bytes of keys and values (plus 320 per entry) the read-through LRU holds.",
    )
    cache_max_staleness_seconds: float = Field(
        0.0,
        ge=0,
        le=86400,
        description="serverless: a function may answer a key it read this recently without asking the "
        "database (0: every read asks).",
    )

    # -- watching ------------------------------------------------------------------
    watch_max_watchers: int = Field(
        1000, ge=1, le=1_000_000, description="Open watch streams at once; more get 503 too_many_watchers."
    )
    watch_max_watchers_per_principal: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="With TUCO_AUTH=token: open watch streams one token or certificate identity may hold "
        "(admins: only the whole cap); more get 429 watcher_limit. Unset: a quarter of TUCO_WATCH_MAX_WATCHERS.",
    )
    watch_max_lag_events: int = Field(
        100_000,
        ge=1,
        le=1 << 40,
        description="A live watch this many revisions behind is ended with a cancel event naming where to resume.",
    )
    watch_max_backlog_bytes: int = Field(
        256 << 10,
        ge=16 << 10,
        le=1 << 34,
        description="Unsent bytes one watch stream holds (plus the frame that passed it) before it waits for its "
        "client; its place is kept in the history meanwhile. The kernel holds at most a sixteenth of it unsent.",
    )
    watch_max_buffered_bytes: int = Field(
        64 << 20,
        ge=1 << 20,
        le=1 << 40,
        description="Unsent bytes of all watch streams together, a frame shared by many counted once; past it, "
        "the streams whose clients stopped reading are cut off, the longest stopped first.",
    )
    watch_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="An idle watch stream gets a heartbeat comment and a progress event this often.",
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated browser origins (https://app.example) whose pages may call the API: CORS "
        "on every route and its preflight; * for any (without credentials); empty: none.",
    )
    cors_allow_origins: str = Field(
        "",
        description="The former name of TUCO_CORS_ORIGINS, still read: both lists together are allowed.",
    )

    @field_validator("log_level", "log_format", "log_backend", "log_sync", mode="before")
    @classmethod
    def _choices_ignore_case(cls, value: object) -> object:
        """TUCO_LOG_LEVEL=INFO means info: people type levels in capitals."""
        return value.lower() if isinstance(value, str) else value

    @field_validator("cors_origins", "cors_allow_origins")
    @classmethod
    def _origins_are_origins(cls, value: str) -> str:
        """An origin is scheme://host[:port] with nothing after it: anything else would never match a browser's."""
        for origin in (part.strip() for part in value.split(",") if part.strip()):
            if origin == "*":
                continue
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest or " " in rest:
                raise ValueError(f"{origin!r} is not an origin such as https://app.example or http://127.0.0.1:3000")
        return value

    @property
    def allowed_origins(self) -> frozenset[str]:
        """TUCO_CORS_ORIGINS and TUCO_CORS_ALLOW_ORIGINS together, as a set."""
        listed = f"{self.cors_origins},{self.cors_allow_origins}"
        return frozenset(part.strip() for part in listed.split(",") if part.strip())

    # -- expiring keys and leases --
    max_ttl_seconds: int = Field(
        365 * 86400,
        ge=1,
        le=10 * 365 * 86400,
        description="Longest time to live a PUT ?ttl= or a lease may ask for; longer is 400 invalid_parameter.",
    )
    max_leases: int = Field(
        10_000, ge=1, le=10_000_000, description="Live leases, all clients together; a grant over it is 429."
    )
    max_leases_per_principal: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="With TUCO_AUTH=token: live leases one token or certificate identity may hold (admins: only "
        "the whole cap); a grant over it is 429. Unset: a quarter of TUCO_MAX_LEASES.",
    )
    max_keys_per_lease: int = Field(
        10_000, ge=1, le=10_000_000, description="Keys attached to one lease; a PUT ?lease= over it is 429."
    )

    @model_validator(mode="before")
    @classmethod
    def _database_url_from_its_file(cls, data: Any) -> Any:
        """TUCO_DATABASE_URL_FILE's content becomes the URL (checked as one), read once, at start."""
        if not isinstance(data, dict) or data.get("database_url_file") in (None, ""):
            return data
        if data.get("database_url") not in (None, ""):
            raise ValueError("set TUCO_DATABASE_URL or TUCO_DATABASE_URL_FILE, not both")
        path = Path(str(data["database_url_file"]))
        try:
            with open(path, "rb") as file:
                raw = file.read(65536)
        except OSError as exc:
            raise ValueError(f"TUCO_DATABASE_URL_FILE: cannot read {path}: {exc.strerror or exc}") from None
        try:
            url = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"TUCO_DATABASE_URL_FILE: {path} is not UTF-8 text") from None
        if not url:
            raise ValueError(f"TUCO_DATABASE_URL_FILE: {path} is empty")
        return {**data, "database_url": url}

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, url: SecretStr | None) -> SecretStr | None:
        """A URL that does not read one way would reach the driver garbled (and its password the logs)."""
        if url is not None:
            check_database_url(url.get_secret_value())
        return url

    @model_validator(mode="after")
    def _tls_files_come_in_pairs(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TUCO_TLS_CERT_FILE and TUCO_TLS_KEY_FILE must be set together")
        return self

    @model_validator(mode="after")
    def _cache_needs_a_shared_state(self) -> Settings:
        if self.state is StateMode.CACHE and self.log_backend is not LogBackend.POSTGRES:
            raise ValueError(
                "TUCO_STATE=cache needs TUCO_LOG_BACKEND=postgres: the file log keeps no state to read through to"
            )
        return self

    @model_validator(mode="after")
    def _client_ca_needs_tls(self) -> Settings:
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("TUCO_TLS_CLIENT_CA_FILE needs TUCO_TLS_CERT_FILE and TUCO_TLS_KEY_FILE (HTTPS)")
        if self.bootstrap_token is not None and self.bootstrap_token_file is not None:
            raise ValueError("set TUCO_BOOTSTRAP_TOKEN or TUCO_BOOTSTRAP_TOKEN_FILE, not both")
        return self

    @model_validator(mode="after")
    def _one_value_fits_the_body_budget(self) -> Settings:
        if self.max_buffered_bytes is not None and self.max_buffered_bytes < self.max_value_bytes:
            raise ValueError(
                f"TUCO_MAX_BUFFERED_BYTES ({self.max_buffered_bytes}) must be at least "
                f"TUCO_MAX_VALUE_BYTES ({self.max_value_bytes}), or no largest value could ever be received"
            )
        return self

    @property
    def body_budget_bytes(self) -> int:
        """TUCO_MAX_BUFFERED_BYTES, or its default: room for 64 MiB of bodies, and always for one largest value."""
        if self.max_buffered_bytes is not None:
            return self.max_buffered_bytes
        return max(64 << 20, self.max_value_bytes)

    @property
    def log_path(self) -> Path:
        """The file log's path."""
        return self.data_dir / LOG_FILE_NAME

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def public_view(self) -> dict[str, Any]:
        """The effective configuration with secrets redacted, for the start-up log line."""
        view = self.model_dump(mode="json")
        url = self.database_url.get_secret_value() if self.database_url else None
        view["database_url"] = redact_dsn(url) if url else None
        view["bootstrap_token"] = "***" if self.bootstrap_token is not None else None
        return view


_SECRET_FIELDS = ("database_url", "bootstrap_token")


CLIENT_VARIABLES = frozenset(
    ("TUCO_URL", "TUCO_TOKEN", "TUCO_TOKEN_FILE", "TUCO_CA_FILE", "TUCO_CLIENT_CERT_FILE", "TUCO_CLIENT_KEY_FILE")
)
"""Variables the client side (``tuco get``, ``tuco.client``) reads; not server settings, never "unknown"."""

BUILD_VARIABLES = frozenset(("TUCO_BUILD",))
"""Variables the build reads (``hatch_build.py``, ``scripts/run``: compiled or pure); never "unknown" either."""


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``(name, nearest setting or None)`` for each ``TUCO_*`` variable no setting reads, sorted.

    pydantic-settings ignores them, so a misspelled ``TUCO_PROT`` would silently leave the
    default in force; ``tuco serve`` warns about each one at start.
    """
    known = sorted(f"TUCO_{name.upper()}" for name in Settings.model_fields)
    unknown = []
    for name in sorted(environ):
        if name.startswith("TUCO_") and name not in known and name not in CLIENT_VARIABLES | BUILD_VARIABLES:
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            unknown.append((name, nearest[0] if nearest else None))
    return unknown


def load_settings(**overrides: Any) -> Settings:
    """Read the environment, apply explicit overrides; raise ConfigurationError in one line."""
    clean = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigurationError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not where:
            problems.append(message)
            continue
        given = error.get("input")
        shown = "" if where in _SECRET_FIELDS or isinstance(given, dict) else f" (got {given!r})"
        problems.append(f"TUCO_{where.upper()}: {message}{shown}")
    return "invalid configuration: " + "; ".join(problems)
