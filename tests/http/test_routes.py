"""The route table: one match() for every front end, and each operation declaring what it needs."""

from __future__ import annotations

from tuco.core.tokens import Permission
from tuco.http.routes import ALIAS, KEEPALIVE, KEY, LEASE, ROUTES, TOKEN, Target, match


def test_match_takes_the_key_fast_path_then_fixed_paths_then_resources_then_the_alias() -> None:
    """/v1/key/{k} first, fixed paths by lookup, a lease's and a token's paths, every other segment the alias."""
    assert match(b"/v1/key/a%2Fb") == (KEY, b"a%2Fb")
    assert match(b"/v1/key/a/b") == (KEY, b"a/b")
    assert match(b"/v1/leases")[0] is not None and match(b"/v1/leases")[0].pattern == "/v1/leases"  # type: ignore[union-attr]
    assert match(b"/v1/leases/12") == (LEASE, b"12")
    assert match(b"/v1/leases/12/keepalive") == (KEEPALIVE, b"12")
    assert match(b"/v1/tokens/abc") == (TOKEN, b"abc")
    assert match(b"/v1/greeting") == (ALIAS, b"greeting")
    assert match(b"/v1/leases/12/other") == (None, b"")
    assert match(b"/nowhere") == (None, b"")


def test_every_operation_declares_its_permission_unless_public() -> None:
    """Only public and authenticated-only operations go without a permission; a route's operations share a target."""
    for route in ROUTES:
        targets = {operation.target for operation in route.operations.values()}
        assert len(targets) == 1, route.pattern
        for method, operation in route.operations.items():
            if operation.target in (Target.PUBLIC, Target.AUTHENTICATED):
                continue
            assert isinstance(operation.permission, Permission), (route.pattern, method)


def test_the_lease_listing_needs_read_on_some_prefix_and_a_grant_write() -> None:
    """GET /v1/leases is read on any prefix (SOME); POST is write on any prefix; 405 names GET, HEAD, POST."""
    leases = next(route for route in ROUTES if route.pattern == "/v1/leases")
    assert leases.operations[b"GET"].target is Target.SOME
    assert (leases.operations[b"GET"].permission, leases.operations[b"POST"].permission) == (
        Permission.READ,
        Permission.WRITE,
    )
    assert dict(leases.not_allowed.headers)[b"Allow"] == b"GET, HEAD, POST"
