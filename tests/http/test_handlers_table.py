"""Route handler names resolve to handler functions; a bad name is refused when the API is built."""

from __future__ import annotations

import pytest

from tuco.http.handlers import INLINE, resolve
from tuco.http.handlers.status import health
from tuco.http.routes import ROUTES


def _declared() -> set[str]:
    return {operation.handler for route in ROUTES for operation in route.operations.values()}


def test_every_handler_name_in_routes_resolves_to_a_function_of_its_module() -> None:
    names = sorted(_declared() - INLINE)
    assert len(names) == 14
    for name in names:
        module, _, function = name.partition(".")
        handler = resolve(name)
        assert (handler.__module__, handler.__name__) == (f"tuco.http.handlers.{module}", function)
    assert resolve("status.health") is health
    assert _declared() >= INLINE


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("health", "a handler is named as module.function, not 'health'"),
        ("status.nothing", "no handler 'nothing' in tuco.http.handlers.status"),
        ("_base.settled", "a handler is named as module.function, not '_base.settled'"),
        ("status.health.x", "a handler is named as module.function, not 'status.health.x'"),
        ("keys.DEFAULT_MISSING", "no handler 'DEFAULT_MISSING' in tuco.http.handlers.keys"),
    ],
)
def test_a_name_that_names_no_handler_is_refused(name: str, why: str) -> None:
    with pytest.raises(LookupError) as refused:
        resolve(name)
    assert str(refused.value) == why
