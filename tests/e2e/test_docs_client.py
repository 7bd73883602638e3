"""The examples of docs/client.md run as written against a real server, printing what they promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.process import TucoProcess

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text(encoding="utf-8")


def _examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE, flags=re.DOTALL)


def test_the_python_examples_run_against_a_server(tuco: Callable[..., TucoProcess], tmp_path: Path) -> None:
    """Both examples exit 0 with TUCO_URL pointing at a fresh server, and print what the comments promise."""
    server = tuco()
    examples = _examples()
    assert len(examples) == 2
    outputs = []
    for number, code in enumerate(examples):
        script = tmp_path / f"example{number}.py"
        script.write_text(code)
        result = subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, "TUCO_URL": server.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert outputs[0] == "app/config b'{\"debug\": true}'\napp/flags b'on'\n"
    assert re.fullmatch(r"\d+ put jobs/1 b'queued'\n", outputs[1])
