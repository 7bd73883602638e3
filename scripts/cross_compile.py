"""Cross-compile tuco's request path for another CPU's Linux: mypyc's C written here, compiled by a cross compiler.

    .venv/build/bin/python scripts/cross_compile.py --target aarch64-linux-gnu --sysroot DIR --out DIR

mypyc writes the same C for every 64-bit Linux of one Python version, so the C comes from the arguments and the
flags ``hatch_build.py`` compiles with here (``mypyc_arguments``, ``compile_environment``), and each extension is
compiled and linked as setuptools does it here (this Python's ``CFLAGS`` and ``CCSHARED``, mypyc's own flags
after them, ``-shared`` to link), with ``<target>-gcc`` and the target's Python headers, which ``--sysroot``
holds as Debian lays them out (``usr/include/python3.X`` and ``usr/include/<target>/python3.X/pyconfig.h``).
Extensions are named as the target's Python looks for them (``.cpython-311-aarch64-linux-gnu.so``).

``--out`` gets the tree that ``scripts/package-serverless`` ships: ``tuco/`` (its sources with the compiled
modules' extensions beside them, our C extensions too) and mypyc's shared library at the top, as in
``build/compiled``.
At most two compilers run at once. Run by ``tuco_cross_compiled`` (scripts/_env.sh), which installs the
cross compiler and fills the sysroot.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS = 2  # the compile shares two cores with everything else


def extension_suffix(target: str) -> str:
    """The file name ending the target's CPython looks for: ``.cpython-311-aarch64-linux-gnu.so``."""
    return f".cpython-{sys.version_info[0]}{sys.version_info[1]}-{target}.so"


def python_includes(sysroot: Path, target: str) -> list[str]:
    """The compiler flags that find the target's ``Python.h`` and its ``pyconfig.h`` in ``sysroot``.

    Debian's ``python3.X/pyconfig.h`` includes ``<target/python3.X/pyconfig.h>``: ``usr/include`` is searched
    for it after the cross compiler's own C library headers (``-idirafter``), never before them.
    """
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    headers = sysroot / "usr" / "include" / version
    config = sysroot / "usr" / "include" / target / version / "pyconfig.h"
    missing = [str(path) for path in (headers / "Python.h", config) if not path.is_file()]
    if missing:
        raise SystemExit(f"cross_compile: no {version} headers for {target}: {', '.join(missing)} missing")
    return [f"-I{headers}", "-idirafter", str(sysroot / "usr" / "include")]


def run(argv: Sequence[str]) -> None:
    """Run one compiler command, printing it first; its failure ends the build with what it printed."""
    print(shlex.join(argv), flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.stdout or done.stderr:
        print(done.stdout + done.stderr, end="", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"cross_compile: {argv[0]} failed (status {done.returncode})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="the GNU triplet: aarch64-linux-gnu")
    parser.add_argument("--sysroot", required=True, type=Path, help="holds the target's Python headers")
    parser.add_argument("--out", required=True, type=Path, help="where the tree goes (must not exist)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    importlib.import_module("setuptools")  # before mypyc.build, which then makes setuptools' Extension objects
    from hatch_build import NATIVE_FLAGS, compile_environment, mypyc_arguments, native_extensions
    from mypyc.build import mypycify
    from setuptools import Extension  # type: ignore[import-untyped]  # no stubs in the build venv

    cc = f"{args.target}-gcc"
    if shutil.which(cc) is None:
        raise SystemExit(f"cross_compile: {cc} is not installed (Debian: gcc-{args.target.replace('_', '-')})")
    includes = python_includes(args.sysroot.resolve(), args.target)
    out = args.out.resolve()
    if out.exists():
        raise SystemExit(f"cross_compile: {out} exists")
    work = Path(tempfile.mkdtemp(prefix="tuco-cross-"))
    try:
        tree = work / "src"
        arguments = mypyc_arguments(ROOT / "src", work)
        environment = compile_environment(work)
        os.environ.update(environment)
        os.chdir(tree)
        # mypyc's own command line (python -m mypyc, as hatch_build.py runs it) passes these levels.
        extensions = mypycify(
            arguments,
            opt_level=os.environ.get("MYPYC_OPT_LEVEL", "3"),
            debug_level=environment["MYPYC_DEBUG_LEVEL"],
        )
        extensions += [
            Extension(name, [path], extra_compile_args=NATIVE_FLAGS) for name, path in native_extensions(ROOT / "src")
        ]
        # As setuptools composes them: the building Python's CFLAGS, then the caller's, then CCSHARED; -I of the
        # extension's directories, then Python's; -c; mypyc's flags last. Linked with -shared and the caller's CFLAGS.
        cflags = shlex.split(f"{sysconfig.get_config_var('CFLAGS')} {environment['CFLAGS']}")
        compile_cc = [cc, *cflags, *shlex.split(str(sysconfig.get_config_var("CCSHARED")))]
        link = [cc, "-shared", *shlex.split(environment["CFLAGS"])]
        objects_dir = tree / "build" / f"temp.{args.target}"
        built_dir = tree / "build" / f"lib.{args.target}"
        jobs: list[list[str]] = []
        links: list[tuple[list[str], Path]] = []
        suffix = extension_suffix(args.target)
        for extension in extensions:
            objects = []
            for source in extension.sources:
                obj = objects_dir / Path(source).with_suffix(".o")
                obj.parent.mkdir(parents=True, exist_ok=True)
                own = [f"-I{folder}" for folder in extension.include_dirs]
                jobs.append([*compile_cc, *own, *includes, "-c", source, "-o", str(obj), *extension.extra_compile_args])
                objects.append(str(obj))
            built = built_dir / (extension.name.replace(".", "/") + suffix)
            built.parent.mkdir(parents=True, exist_ok=True)
            links.append(([*link, *objects, "-o", str(built)], built))
        # The largest source first (mypyc's whole group is one file): the shims compile beside it.
        jobs.sort(key=lambda job: -(tree / job[job.index("-c") + 1]).stat().st_size)
        with ThreadPoolExecutor(max_workers=min(JOBS, os.cpu_count() or 1)) as pool:
            list(pool.map(run, jobs))
        for command, _ in links:
            run(command)
        staging = Path(f"{out}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(tree / "tuco", staging / "tuco", ignore=shutil.ignore_patterns("__pycache__"))
        for _, built in links:
            target = staging / built.relative_to(built_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, target)
        staging.rename(out)
        print(f"cross_compile: {len(links)} extensions for {args.target} in {out}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
