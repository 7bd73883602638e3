"""``tuco.asgi:app`` for any ASGI server, configured from ``TUCO_*`` like ``tuco serve``.

Example: ``uvicorn tuco.asgi:app`` or, as a factory, ``uvicorn --factory tuco.asgi:create_app``.
Settings are read at lifespan start-up, so importing this module has no side effects.
"""

from __future__ import annotations

from tuco.assembly import build_service
from tuco.config import load_settings
from tuco.http.asgi import ASGIApp
from tuco.observability import Metrics
from tuco.service import Service

__all__ = ["app", "create_app"]


def create_app() -> ASGIApp:
    """A new ASGI app whose service is built from the environment when the server starts it."""

    def from_environment() -> Service:
        settings = load_settings()
        app.access_log = settings.access_log
        return build_service(settings, Metrics())

    app = ASGIApp(service_factory=from_environment)
    return app


app = create_app()
