"""tuco health: the container's health check, with no curl in the image."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
import httpx

from tuco.cli._common import CA_OPTION
from tuco.errors import ConfigurationError

if TYPE_CHECKING:
    from tuco.config import Settings

__all__ = ["health"]


@click.command()
@click.option(
    "--url",
    envvar="TUCO_URL",
    default=None,
    help="Server URL [env: TUCO_URL]; default: the address TUCO_HOST, TUCO_PORT and TUCO_TLS_* configure.",
)
@CA_OPTION
@click.option("--ready", is_flag=True, help="Check /readyz (replayed, takes writes) instead of /healthz (alive).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True, help="Seconds to wait.")
def health(url: str | None, cacert: Path | None, ready: bool, timeout: float) -> None:
    """Exit 0 if the server answers 200 on /healthz (--ready: /readyz), else say why on stderr and exit 1.

    Meant for container health checks (no curl needed): without --url it checks the
    server that `tuco serve` would start with the same TUCO_* settings, over HTTPS
    when TUCO_TLS_CERT_FILE is set (verified against --cacert if given; otherwise
    the local server's certificate is not verified, as no secret is sent).
    """
    verify: ssl.SSLContext | bool = True
    if url is None:
        try:
            from tuco.config import load_settings
        except ImportError:
            _unhealthy("without --url it reads the server's settings, which needs tuco[server]: pass --url")
        try:
            settings = load_settings()
        except ConfigurationError as exc:
            _unhealthy(str(exc))
        url = _own_url(settings)
        verify = bool(cacert) or not settings.tls
    if cacert:
        verify = ssl.create_default_context(cafile=str(cacert))
    path = "/readyz" if ready else "/healthz"
    try:
        with httpx.Client(verify=verify, timeout=timeout) as client:
            response = client.get(f"{url.rstrip('/')}{path}")
    except httpx.HTTPError as exc:
        _unhealthy(f"cannot reach {url}: {exc or type(exc).__name__}")
    except ValueError as exc:  # a URL httpx cannot even parse
        _unhealthy(f"cannot reach {url}: {exc}")
    if response.status_code != 200:
        _unhealthy(f"{path} answered {response.status_code}: {response.text[:200]}")


def _own_url(settings: Settings) -> str:
    """The URL a local client reaches `tuco serve` at: a wildcard address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.port}"


def _unhealthy(message: str) -> NoReturn:
    click.echo(f"tuco: unhealthy: {message}", err=True)
    sys.exit(1)
