"""A serverless container over a fresh PostgreSQL database, as one Lambda container would hold it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tuco.assembly import build_service
from tuco.config import LogBackend, load_settings
from tuco.serverless import Container

MakeContainer = Callable[..., Container]


@pytest.fixture
def containers(pg_dsn: str) -> Iterator[MakeContainer]:
    """A factory of containers (each its own loop, service and pool) on this test's database, closed afterwards."""
    made: list[Container] = []

    def make(dsn: str | None = None, **settings: object) -> Container:
        loaded = load_settings(log_backend=LogBackend.POSTGRES, database_url=dsn or pg_dsn, **settings)
        container = Container(build_service(loaded, serverless=True))
        made.append(container)
        return container

    yield make
    for container in made:
        container.close()


@pytest.fixture(params=["1.0", "2.0"])
def fmt(request: pytest.FixtureRequest) -> str:
    """Each payload format: REST APIs (1.0) and HTTP APIs (2.0)."""
    return str(request.param)
