"""The layering the architecture promises: HTTP above Service, one assembly module naming the logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tuco.assembly import build_service
from tuco.config import load_settings
from tuco.log.file import FileTransactionLog

SRC = Path(__file__).resolve().parents[1] / "src" / "tuco"


def test_nothing_below_the_http_layer_imports_it() -> None:
    """Importing the service, the assembly, the core and the logs loads no tuco.http module."""
    code = (
        "import sys, tuco.service, tuco.assembly, tuco.core.store, tuco.log.file, tuco.log.postgres, tuco.testing\n"
        "print(sorted(name for name in sys.modules if name.startswith('tuco.http')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_client_loads_none_of_the_server() -> None:
    """Importing tuco.client loads no server module (HTTP layer, logs, service) and no server-only driver."""
    code = (
        "import sys, tuco.client\n"
        "server = ('tuco.http', 'tuco.log', 'tuco.service', 'tuco.runtime', 'asyncpg', 'uvloop', 'httptools')\n"
        "print(sorted(name for name in sys.modules if name.startswith(server)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_only_the_assembly_module_names_a_concrete_log_outside_the_log_package() -> None:
    """Above tuco.log, FileTransactionLog and PostgresTransactionLog are named in assembly.py (and the fakes) only."""
    naming = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.parts[len(SRC.parts)] != "log"
        and ("FileTransactionLog" in path.read_text() or "PostgresTransactionLog" in path.read_text())
    )
    assert naming == ["assembly.py", "testing.py"]


def test_build_service_wires_the_file_logs_compaction_snapshot_and_the_history_bound(tmp_path: Path) -> None:
    """The file log built from settings compacts from the service's store; the store keeps the configured history."""
    service = build_service(load_settings(data_dir=tmp_path, history_max_bytes=12345))
    log = service.log
    assert isinstance(log, FileTransactionLog)
    assert log.entries == service.store.entries
    assert service.store.history.max_bytes == 12345
