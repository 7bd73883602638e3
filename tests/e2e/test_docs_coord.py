"""The example of docs/coordination.md runs as written against a real server, printing what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.process import TucoProcess

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "coordination.md").read_text(encoding="utf-8")


def test_the_coordination_example_runs_against_a_server(tuco: Callable[..., TucoProcess], tmp_path: Path) -> None:
    """The example exits 0 with TUCO_URL set and prints the leader's proclaimed value, then the counter and ledger."""
    server = tuco()
    [code] = re.findall(r"```python\n(.*?)```", PAGE, flags=re.DOTALL)
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "TUCO_URL": server.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b'node-a:8081'\n1 ['line 0', 'line 1', 'line 2']\n"
