"""The wheel's build hook: compile tuco's request path with mypyc (``tuco._build.COMPILED`` names the modules),
and our C extensions (``tuco._build.NATIVE``) beside it.

``TUCO_BUILD`` chooses: ``compiled`` (fail if it cannot be compiled: the image,
CI), ``pure`` (no compiling), or unset: compile, and where that fails (no C
compiler, no Python headers) build the pure-Python wheel with a warning, which
runs the same code more slowly. An editable install is never compiled: an
extension beside an edited ``.py`` would shadow the edit.

The modules are compiled in a copy of ``src/``, so the checkout never holds an
extension, and with a plain mypy configuration (third-party imports it cannot
see are ``Any``): the wheel is the same whatever else the build machine has.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_MODES = ("compiled", "pure", "auto")
_MYPY_CONFIG = """\
[mypy]
python_version = {version}
ignore_missing_imports = True
"""


class CompileFailedError(Exception):
    """mypyc or the C compiler refused; the message ends with what they printed."""


def compiled_modules(src: Path, name: str = "COMPILED") -> list[str]:
    """``COMPILED`` (or ``NATIVE``) of ``src/tuco/_build.py``, read without importing tuco (the build has none of its
    dependencies)."""
    tree = ast.parse((src / "tuco" / "_build.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return [str(item) for item in ast.literal_eval(node.value)]
    raise CompileFailedError(f"src/tuco/_build.py names no {name} modules")


NATIVE_FLAGS = ["-O3"]
"""Compiler flags of our C extensions beyond Python's own (mypyc gives its modules -O3 too)."""


def native_extensions(src: Path) -> list[tuple[str, str]]:
    """Each C extension of ``NATIVE``: its module name and its source, a path under ``src``."""
    return [(path.rpartition(".")[0].replace("/", "."), path) for path in compiled_modules(src, "NATIVE")]


_BUILD_NATIVE = """\
import sys
from setuptools import Extension, setup
names, sources = sys.argv[1::2], sys.argv[2::2]
flags = {flags!r}
setup(
    name="tuco-native",
    ext_modules=[Extension(n, [s], extra_compile_args=flags) for n, s in zip(names, sources)],
    script_args=["build_ext", "--inplace"],
)
"""


def mypyc_arguments(src: Path, work: Path) -> list[str]:
    """Copy ``src`` to ``work/src`` and write the mypy configuration; mypyc's arguments, to run in ``work/src``.

    ``scripts/cross_compile.py`` (the arm64 serverless archive) generates its C from the same arguments.
    """
    shutil.copytree(src, work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    config = work / "mypy.ini"
    config.write_text(_MYPY_CONFIG.format(version=f"{sys.version_info[0]}.{sys.version_info[1]}"), encoding="utf-8")
    return ["--config-file", str(config), *compiled_modules(src)]


def compile_environment(work: Path) -> dict[str, str]:
    """The variables mypyc's compile runs with: the C flags and the debug level (``scripts/cross_compile.py`` too)."""
    # The temporary directory's name stays out of the extensions' debug information: the same source, the same bytes.
    flags = f"{os.environ.get('CFLAGS', '')} -ffile-prefix-map={work}=.".strip()
    # No debug information (MYPYC_DEBUG_LEVEL=0): it doubles the extensions' size; symbols stay for profilers.
    return {"CFLAGS": flags, "MYPYC_DEBUG_LEVEL": os.environ.get("MYPYC_DEBUG_LEVEL", "0")}


def compile_request_path(src: Path, work: Path) -> list[Path]:
    """Compile the modules in a copy of ``src`` under ``work``; the extension files, under ``work/src``."""
    tree = work / "src"
    argv = [sys.executable, "-m", "mypyc", *mypyc_arguments(src, work)]
    env = {**os.environ, **compile_environment(work)}
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CompileFailedError(f"{' '.join(argv[1:4])} ... failed:\n{(done.stdout + done.stderr)[-4000:]}")
    native = [item for pair in native_extensions(src) for item in pair]
    argv = [sys.executable, "-c", _BUILD_NATIVE.format(flags=NATIVE_FLAGS), *native]
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CompileFailedError(f"building {' '.join(native[1::2])} failed:\n{(done.stdout + done.stderr)[-4000:]}")
    built = work / "src" / "build"
    return sorted(path for path in tree.rglob("*") if path.suffix in (".so", ".pyd") and built not in path.parents)


class CompiledRequestPath(BuildHookInterface):  # type: ignore[misc]  # hatchling ships no types
    """Adds the compiled modules to a standard wheel, which then carries this interpreter's and platform's tag."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        mode = os.environ.get("TUCO_BUILD", "auto") or "auto"
        if mode not in _MODES:
            raise ValueError(f"TUCO_BUILD must be one of {', '.join(_MODES)} (or unset), not {mode!r}")
        if self.target_name != "wheel" or version == "editable" or mode == "pure":
            return
        self._work = Path(tempfile.mkdtemp(prefix="tuco-compile-"))
        try:
            extensions = compile_request_path(Path(self.root) / "src", self._work)
        except (CompileFailedError, OSError) as exc:
            if mode == "compiled":
                raise
            self.app.display_warning(f"tuco: could not compile the request path; this wheel is pure Python.\n{exc}")
            return
        self.app.display_info(f"tuco: compiled {len(extensions)} extension files with mypyc")
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        tree = self._work / "src"
        for path in extensions:
            build_data["force_include"][str(path)] = path.relative_to(tree).as_posix()

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        work = getattr(self, "_work", None)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
