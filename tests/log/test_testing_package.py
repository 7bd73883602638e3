"""tuco.testing is a package of private modules: its contract suite and memory fakes load no log adapter."""

from __future__ import annotations

import json
import subprocess
import sys

import tuco.testing


def _loaded_after(code: str) -> list[str]:
    program = f"import json, sys\n{code}\nprint(json.dumps(sorted(name for name in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    return [name for name in json.loads(result.stdout) if name in ("tuco.log.file", "tuco.log.postgres")]


def test_the_contract_suite_and_the_memory_fakes_load_no_file_log() -> None:
    """Importing tuco.testing, check_transaction_log and MemoryLog loads neither tuco.log.file nor tuco.log.postgres."""
    code = "import tuco.testing\nfrom tuco.testing import check_transaction_log, MemoryLog"
    assert _loaded_after(code) == []


def test_the_contract_module_loads_no_file_log() -> None:
    """Importing tuco.testing._contract on its own loads no log adapter."""
    assert _loaded_after("import tuco.testing._contract") == []


def test_importing_tuco_log_loads_no_adapter() -> None:
    """Importing tuco.log loads neither adapter; naming one of its exports loads it."""
    assert _loaded_after("import tuco.log") == []
    assert _loaded_after("import tuco.log\ntuco.log.FileTransactionLog") == ["tuco.log.file"]


def test_the_disk_fakes_load_on_first_use() -> None:
    """Every name in tuco.testing.__all__ is there, the disk fakes from tuco.testing._disk."""
    missing = [name for name in tuco.testing.__all__ if not hasattr(tuco.testing, name)]
    assert missing == []
    assert tuco.testing.FailingDisk.__module__ == "tuco.testing._disk"
