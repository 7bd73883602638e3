"""What compiling tuco's hot path with mypyc would win, in instructions per request (valgrind).

``.venv/bin/python bench/compiled.py [--src CHECKOUT/src] [--modules a,b,c] [--what get,put] [--tests] [--keep]``

This measures the build the wheel makes (``hatch_build.py``) against pure
Python, or tries another choice of modules. It copies ``src/`` of a checkout
to a temporary directory, compiles the modules there with mypyc in place (each
``.so`` next to its ``.py``, which the import system prefers), checks that the
compiled modules are what ``import`` finds, and runs ``bench/instructions.py``
on the pure and on the compiled tree. ``--tests`` also runs ``tests/core
tests/http tests/log`` of the checkout with ``PYTHONPATH`` at the compiled
tree. ``--probe`` instead tries each module on its own and prints which ones
mypyc refuses, and why.

The default modules are the wheel's: ``COMPILED`` of the checkout's
``tuco/_build.py``, which says what is left out and why. A compiled coroutine
suspended in an ``except`` or ``finally`` leaves its exception as the
thread's handled exception, so later errors would carry a stale
``__context__`` (``HttpConnection._stream`` once awaited ``aclose()`` in a
``finally``): the request path does not await there.

Needs ``valgrind`` and a C compiler; mypyc comes with the dev dependencies.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _compiled_modules(src: Path) -> tuple[str, ...]:
    """The modules the wheel compiles: ``COMPILED`` of that checkout's ``tuco/_build.py`` (stdlib only, so run)."""
    return tuple(runpy.run_path(str(src / "tuco" / "_build.py"))["COMPILED"])


_HERE = Path(__file__).resolve().parent
_PER_REQUEST = re.compile(r"^(\w+)(?:, [^:]*)?: ([\d,]+) instructions per request")


def _module_path(name: str) -> str:
    """``core/store.py``, ``tuco/core/store.py`` or ``tuco.core.store`` as a path under ``src/``."""
    if not name.endswith(".py"):
        name = name.replace(".", "/") + ".py"
    return name if name.startswith("tuco/") else "tuco/" + name


def _mypyc() -> list[str]:
    beside = Path(sys.executable).with_name("mypyc")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "mypyc"]


def _copy(src: Path, into: Path) -> Path:
    tree = into / "src"
    shutil.copytree(src, tree, ignore=shutil.ignore_patterns("__pycache__", "*.so", "build"))
    return tree


def _compile(tree: Path, modules: list[str], config: Path | None) -> tuple[bool, float, str]:
    """Run mypyc in ``tree`` on ``modules``; whether it built, the seconds it took, and its complaints."""
    argv = _mypyc() + (["--config-file", str(config)] if config else ["--ignore-missing-imports"]) + modules
    started = time.monotonic()
    done = subprocess.run(argv, cwd=tree, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    complaints = [line for line in output.splitlines() if ": error" in line or line.startswith("error:")]
    return done.returncode == 0, seconds, "\n".join(complaints) or output[-2000:]


def _check_imports(tree: Path, modules: list[str]) -> None:
    """Fail unless each compiled module is imported from its ``.so`` when ``PYTHONPATH`` is ``tree``."""
    names = [m[: -len(".py")].replace("/", ".") for m in modules]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    print(n, importlib.import_module(n).__file__)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *names],
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    wrong = [line for line in done.stdout.splitlines() if not line.endswith(".so")]
    if done.returncode != 0 or wrong or len(done.stdout.splitlines()) != len(names):
        raise SystemExit(f"the compiled modules are not what is imported:\n{done.stdout}{done.stderr}")
    print(f"imported from .so: {', '.join(names)}", flush=True)


def _instructions(src: Path, what: str, extra: list[str]) -> dict[str, int]:
    """Instructions per request by ``bench/instructions.py`` for ``src``, per kind of request."""
    argv = [sys.executable, str(_HERE / "instructions.py"), "--src", str(src), "--what", what, *extra]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"instructions.py failed on {src}:\n{done.stdout}{done.stderr}")
    figures = {}
    for line in done.stdout.splitlines():
        found = _PER_REQUEST.match(line)
        if found:
            figures[found.group(1)] = int(found.group(2).replace(",", ""))
    return figures


def _tests(checkout: Path, tree: Path, paths: list[str]) -> int:
    """Run the checkout's tests with the compiled tree first on the path; pytest's exit code."""
    argv = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    print(f"PYTHONPATH={tree} {' '.join(argv)}", flush=True)
    return subprocess.run(argv, cwd=checkout, env=env, check=False).returncode


def _probe(src: Path, modules: list[str], config: Path | None, into: Path) -> int:
    """Try each module on its own; print whether it compiles, the time, and mypyc's errors."""
    for module in modules:
        tree = _copy(src, Path(tempfile.mkdtemp(dir=into)))
        built, seconds, complaints = _compile(tree, [module], config)
        print(f"{module}: {'compiles' if built else 'does not compile'} ({seconds:.0f} s)", flush=True)
        if not built:
            print("    " + complaints.replace("\n", "\n    "), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Instructions per request, pure Python against mypyc-compiled.")
    parser.add_argument("--src", type=Path, default=_HERE.parent / "src", help="the checkout's src/ to copy")
    parser.add_argument("--modules", help="comma-separated, e.g. core/store.py,http/routes (default: tuco._build's)")
    parser.add_argument("--what", default="get,put", help="comma-separated: get, put")
    parser.add_argument("--no-pure", action="store_true", help="count only the compiled tree")
    parser.add_argument("--tests", action="store_true", help="run tests/core tests/http tests/log on the compiled tree")
    parser.add_argument("--probe", action="store_true", help="try each module on its own and say which compile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree and print where it is")
    parser.add_argument("--n1", type=int, default=2000)
    parser.add_argument("--n2", type=int, default=6000)
    args = parser.parse_args()
    src = args.src.resolve()
    checkout = src.parent
    config = checkout / "pyproject.toml" if (checkout / "pyproject.toml").exists() else None
    chosen = args.modules.split(",") if args.modules else _compiled_modules(src)
    modules = [_module_path(m.strip()) for m in chosen if m.strip()]
    missing = [m for m in modules if not (src / m).is_file()]
    if missing:
        raise SystemExit(f"no such module under {src}: {', '.join(missing)}")
    work = Path(tempfile.mkdtemp(prefix="tuco-mypyc-"))
    try:
        if args.probe:
            return _probe(src, modules, config, work)
        tree = _copy(src, work)
        built, seconds, complaints = _compile(tree, modules, config)
        if not built:
            raise SystemExit(f"mypyc failed after {seconds:.0f} s:\n{complaints}")
        print(f"compiled {len(modules)} modules in {seconds:.0f} s: {', '.join(modules)}", flush=True)
        _check_imports(tree, modules)
        if args.tests:
            code = _tests(checkout, tree, ["tests/core", "tests/http", "tests/log"])
            print(f"tests on the compiled tree: {'passed' if code == 0 else f'FAILED (pytest exit {code})'}")
        extra = ["--n1", str(args.n1), "--n2", str(args.n2)]
        pure = {} if args.no_pure else _instructions(src, args.what, extra)
        compiled = _instructions(tree, args.what, extra)
        for what in args.what.split(","):
            line = f"{what}: compiled {compiled[what]:,} instructions per request"
            if what in pure:
                line += f", pure {pure[what]:,}, compiled/pure {compiled[what] / pure[what]:.3f}"
            print(line, flush=True)
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
