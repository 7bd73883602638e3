"""``import tuco.client`` and the CLI's client commands load no server module (the slim ``pip install tuco``)."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_PACKAGES = (
    "asyncpg",
    "httptools",
    "isal",
    "prometheus_client",
    "pydantic",
    "pydantic_settings",
    "sortedcontainers",
    "structlog",
    "uvloop",
)
SERVER_MODULES = ("tuco.core", "tuco.http", "tuco.log", "tuco.service", "tuco.config", "tuco.ports", "tuco.runtime")

PROBE = """
import json, sys
import tuco.client
import tuco.cli
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_the_client_and_the_cli_loads_no_server_module() -> None:
    """In a fresh interpreter, tuco.client and tuco.cli pull in none of the server's packages or modules."""
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, check=True, timeout=60)
    loaded = json.loads(probe.stdout)
    assert "tuco.client" in loaded and "httpx" in loaded
    server = [
        name
        for name in loaded
        if name.split(".")[0] in SERVER_PACKAGES or any(name == m or name.startswith(m + ".") for m in SERVER_MODULES)
    ]
    assert server == []


def test_the_store_is_still_importable_from_tuco() -> None:
    """``from tuco import Store, Event, TransactionLog`` still works, loaded on first use."""
    import tuco
    from tuco.core.store import Store

    assert tuco.Store is Store
    assert {"Event", "EventType", "Store", "TransactionLog"} <= set(tuco.__all__)
