"""The Makefile's targets make their own virtualenv: a fresh checkout needs no `make run` first."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.needs import command

ROOT = Path(__file__).resolve().parent.parent


def _fresh_checkout(into: Path) -> Path:
    """The tracked files of this checkout as they are on disk (no .venv, no caches), as a clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        if not name or not (ROOT / name).is_file():
            continue
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return into


@pytest.mark.slow
@pytest.mark.timeout(900)  # a whole virtualenv is installed from the locks, then mypy runs cold
def test_make_lint_and_make_bench_help_work_on_a_checkout_without_a_virtualenv(tmp_path: Path) -> None:
    """`make lint` creates .venv from the hashed dev lock and passes; `make bench ARGS=--help` then prints usage."""
    command("make", "Debian's make")
    command("git", "Debian's git")
    checkout = _fresh_checkout(tmp_path / "tuco")
    assert not (checkout / ".venv").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    lint = subprocess.run(["make", "lint"], cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "setting up .venv from requirements/dev.lock" in lint.stderr
    assert "Success: no issues found" in lint.stdout
    bench = subprocess.run(
        ["make", "bench", "ARGS=--help"], cwd=checkout, env=env, capture_output=True, text=True, timeout=120
    )
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert "usage: run.py" in bench.stdout and "setting up" not in bench.stderr
