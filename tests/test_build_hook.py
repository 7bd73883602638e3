"""The wheel's build hook (hatch_build.py): compiled where it can be, pure Python with a warning where it cannot,
and a hard failure where compiled was required (the image, CI).

Each build runs pip as the image does: ``pip wheel --no-build-isolation`` in the hash-pinned build environment
(``.venv/build``, made from requirements/build.lock by scripts/test before the suite). ``CC=false`` stands for a
machine without a C compiler: mypy's checks pass, then the first compile of C fails.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.needs import unavailable

ROOT = Path(__file__).resolve().parent.parent
BUILD_PYTHON = ROOT / ".venv" / "build" / "bin" / "python"

pytestmark = pytest.mark.slow


def _wheel(out: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    if not BUILD_PYTHON.exists():
        unavailable(f"{BUILD_PYTHON} is missing (scripts/test makes it from requirements/build.lock)")
    argv = [str(BUILD_PYTHON), "-m", "pip", "wheel", "-v", "--no-build-isolation", "--no-deps", "--no-index"]
    built = subprocess.run(
        [*argv, "--wheel-dir", str(out), str(ROOT)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return built, sorted(out.glob("*.whl"))


def _extensions(wheel: Path) -> list[str]:
    return [name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".so")]


def test_without_a_c_compiler_the_wheel_is_pure_python_and_says_why(tmp_path: Path) -> None:
    """Unset TUCO_BUILD and no compiler: a py3-none-any wheel with every source and no extension, and a warning."""
    built, wheels = _wheel(tmp_path, CC="false", TUCO_BUILD="")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert [wheel.name for wheel in wheels] == ["tuco-0.1.0-py3-none-any.whl"]
    assert _extensions(wheels[0]) == []
    assert "tuco/service.py" in zipfile.ZipFile(wheels[0]).namelist()
    assert "tuco: could not compile the request path; this wheel is pure Python." in built.stdout + built.stderr


def test_with_compiled_required_and_no_c_compiler_the_build_fails(tmp_path: Path) -> None:
    """TUCO_BUILD=compiled (the image's, CI's) never falls back: no wheel at all, and mypyc's failure shown."""
    built, wheels = _wheel(tmp_path, CC="false", TUCO_BUILD="compiled")
    assert built.returncode != 0
    assert wheels == []
    assert "CompileFailedError" in built.stdout + built.stderr


def test_pure_builds_no_extension_and_an_unknown_choice_is_refused(tmp_path: Path) -> None:
    """TUCO_BUILD=pure is the plain wheel; a misspelt TUCO_BUILD fails the build naming the choices."""
    built, wheels = _wheel(tmp_path / "pure", TUCO_BUILD="pure")
    assert built.returncode == 0, built.stderr[-3000:]
    assert [wheel.name for wheel in wheels] == ["tuco-0.1.0-py3-none-any.whl"]
    assert _extensions(wheels[0]) == []
    built, wheels = _wheel(tmp_path / "typo", TUCO_BUILD="compile")
    assert (built.returncode != 0, wheels) == (True, [])
    assert "TUCO_BUILD must be one of compiled, pure, auto (or unset), not 'compile'" in built.stdout + built.stderr
