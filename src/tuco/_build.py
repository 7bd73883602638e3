"""Which build of tuco this is: the request path compiled with mypyc, or pure Python.

``COMPILED`` lists the modules the wheel compiles (``hatch_build.py`` reads it
from this file; nothing else names them). A compiled module is an extension
file beside its ``.py``, and the import system takes the extension first, so
looking for those files tells which build runs without importing any of them:
``tuco --version`` and ``/readyz`` (for admins) say it, and the test suite checks
it is the build it meant to test.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

# The request path: the store, its codec and the log's decoder (start-up replay), the group commit and its
# sequencing, the native connection and the ASGI adapter, the pipeline (routes, guard, dispatch and its handlers),
# the request metrics, the watchers and the service. Paths under src/, compiled together (one shared runtime
# library). Not here: what mypyc cannot compile (the file and PostgreSQL logs' async generators; errors.py, whose
# classes inherit KeyError and kin), what runs once (configuration, assembly, the CLI) and the client.
COMPILED = (
    "tuco/core/_untrack.py",
    "tuco/core/events.py",
    "tuco/core/origin.py",
    "tuco/core/history.py",
    "tuco/core/store.py",
    "tuco/core/_listing.py",
    "tuco/core/_expiry.py",
    "tuco/core/leases.py",
    "tuco/core/lru.py",
    "tuco/core/tokens.py",
    "tuco/core/txn.py",
    "tuco/core/watch.py",
    "tuco/core/distribution.py",
    "tuco/core/_format.py",
    "tuco/core/_decoder.py",
    "tuco/core/codec.py",
    "tuco/log/_sequencing.py",
    "tuco/log/batching.py",
    "tuco/log/_scan.py",
    "tuco/replay.py",
    "tuco/watchers.py",
    "tuco/reads.py",
    "tuco/limits.py",
    "tuco/http/_fast.py",
    "tuco/http/messages.py",
    "tuco/http/routes.py",
    "tuco/http/answers.py",
    "tuco/http/_clock.py",
    "tuco/http/_context.py",
    "tuco/http/_wire.py",
    "tuco/http/_reader.py",
    "tuco/http/_stream.py",
    "tuco/http/_order.py",
    "tuco/http/_timing.py",
    "tuco/http/connection.py",
    "tuco/http/asgi.py",
    "tuco/http/_route.py",
    "tuco/http/params.py",
    "tuco/http/audit.py",
    "tuco/http/auth.py",
    "tuco/http/cors.py",
    "tuco/http/observer.py",
    "tuco/http/api.py",
    "tuco/http/handlers/__init__.py",
    "tuco/http/handlers/_base.py",
    "tuco/http/handlers/_writes.py",
    "tuco/http/handlers/keys.py",
    "tuco/http/handlers/listing.py",
    "tuco/http/handlers/leases.py",
    "tuco/http/handlers/watch.py",
    "tuco/http/handlers/tokens.py",
    "tuco/http/handlers/status.py",
    "tuco/http/handlers/txn.py",
    "tuco/http/handlers/history.py",
    "tuco/http/handlers/ttl.py",
    "tuco/_service_leases.py",
    "tuco/collector.py",
    "tuco/service.py",
    "tuco/cache.py",
)

NATIVE = ("tuco/core/_native.c",)
"""C extensions of our own, compiled beside mypyc's modules (start-up replay's inner loops): paths under src/.

Each is an optional speed-up its callers import inside ``try``; the pure build runs without it."""

PURE = "pure"
COMPILED_BUILD = "compiled"


def compiled_modules() -> list[str]:
    """The modules of :data:`COMPILED` and :data:`NATIVE` that are extension files in this installation."""
    root = Path(__file__).resolve().parent.parent
    found = []
    for module in (*COMPILED, *NATIVE):
        stem = root / module.rpartition(".")[0]
        if any(stem.with_name(stem.name + suffix).is_file() for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            found.append(module)
    return found


def build() -> str:
    """``compiled``, ``pure``, or ``partly compiled (k of n modules)`` (a broken installation: reinstall)."""
    count = len(compiled_modules())
    total = len(COMPILED) + len(NATIVE)
    if count == total:
        return COMPILED_BUILD
    if count == 0:
        return PURE
    return f"partly compiled ({count} of {total} modules)"
