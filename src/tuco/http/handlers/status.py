"""The status routes: ``/healthz``, ``/readyz``, ``/metrics`` and the OpenAPI document."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from tuco import __version__
from tuco._build import build
from tuco.errors import LogReadOnlyError
from tuco.http.answers import JSON, NOT_FOUND_PATH, NOT_READY, PROMETHEUS_TEXT, json_response, log_message
from tuco.http.handlers._base import Context
from tuco.http.messages import Answer, Request, Response
from tuco.service import Phase, Service

__all__ = ["health", "metrics", "openapi", "public_log_status", "readiness", "readiness_summary"]

_HEALTHY = json_response(200, {"status": "alive"})
_READY = json_response(200, {"ready": True})
# The /readyz fields of LogStatus.describe() an anonymous client may see (no hosts, users, database names).
# Which tuco answers, for whoever sees the full readiness (an admin, or anyone with authentication off).
_BUILD = build()
_PUBLIC_LOG_FIELDS: tuple[str, ...] = ("backend", "sync", "last_sequence", "lag_events", "lag_seconds", "connected")


def public_log_status(described: Mapping[str, object]) -> dict[str, object]:
    """The whitelisted, scalar fields of a log's ``describe()``, for anonymous readers of ``/readyz``."""
    shown: dict[str, object] = {}
    for name in _PUBLIC_LOG_FIELDS:
        value = described.get(name)
        if isinstance(value, bool | int | float) or (name in ("backend", "sync") and isinstance(value, str)):
            shown[name] = value
    return shown


@functools.cache
def _openapi_document() -> Response:
    """The OpenAPI document, built on first use: start-up never pays for it."""
    from tuco.http.openapi import document_bytes

    return Response(200, document_bytes(), JSON)


def health(ctx: Context, request: Request, segment: bytes) -> Answer:
    return _HEALTHY


def metrics(ctx: Context, request: Request, segment: bytes) -> Answer:
    if ctx.metrics is None:
        return NOT_FOUND_PATH
    return Response(200, ctx.metrics.render(), PROMETHEUS_TEXT)


def openapi(ctx: Context, request: Request, segment: bytes) -> Answer:
    return _openapi_document()


def readiness_summary(service: Service) -> Response:
    """What an anonymous client learns of readiness with authentication on: ready or not, nothing more."""
    return _READY if service.ready else NOT_READY


def readiness(ctx: Context, request: Request, segment: bytes) -> Answer:
    service = ctx.service
    failure = service.log_failure
    payload: dict[str, object] = {
        "ready": service.ready,
        "phase": service.phase.value,
        "version": __version__,
        "build": _BUILD,
        "log": public_log_status(service.log_description()),
    }
    if failure is not None:
        payload["error"] = failure.code
        payload["message"] = log_message(failure.code)
        if isinstance(failure, LogReadOnlyError):
            payload["missing_privileges"] = list(failure.missing)
    elif service.phase is Phase.STARTING:
        payload["error"] = "starting"
        payload["message"] = log_message("starting")
    store = service.store_status()
    if store is not None:  # full or not, the replica stays ready: reads and deletes are served
        payload["store"] = store
    return json_response(200 if service.ready else NOT_READY.status, payload)
