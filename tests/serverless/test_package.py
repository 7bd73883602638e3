"""The deployable archive: built by scripts/package-serverless, unpacked, imported by a clean interpreter."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.needs import command
from tests.serverless.gateway import body_of, make_event
from tuco._build import COMPILED, NATIVE

ROOT = Path(__file__).resolve().parents[2]


def _package(arch: str, tmp_path: Path) -> Path:
    """``scripts/package-serverless ARCH`` into ``tmp_path/dist``; the archive."""
    out = tmp_path / "dist"
    built = subprocess.run(
        ["scripts/package-serverless", arch],
        cwd=ROOT,
        env={**os.environ, "TUCO_PACKAGE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert f"package-serverless: {arch}: the compiled build" in built.stderr
    return out / f"tuco-serverless-{arch}.zip"


def _unpacked(archive: Path, tmp_path: Path) -> Path:
    task = tmp_path / "task"  # Lambda's /var/task
    task.mkdir()
    zipfile.ZipFile(archive).extractall(task)
    return task


def _events() -> list[dict[str, object]]:
    """Per payload format: PUT, GET, a binary PUT and GET, a POST (405), DELETE, GET (404)."""
    events = []
    for fmt in ("1.0", "2.0"):
        key = f"/v1/key/key-{fmt}"
        events += [
            make_event(fmt, "PUT", key, b"Hello, key-value store!"),
            make_event(fmt, "GET", key),
            make_event(fmt, "PUT", key + "-bin", bytes(range(256)), binary=True),
            make_event(fmt, "GET", key + "-bin"),
            make_event(fmt, "POST", key, b"x"),
            make_event(fmt, "DELETE", key),
            make_event(fmt, "GET", key),
        ]
    return events


def _replay(python: list[str], task: Path, pg_dsn: str, cwd: Path) -> dict[str, Any]:
    """``python -I -S replay_events.py TASK`` (``python``: the interpreter's command) over the events; its result."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TUCO_LOG_BACKEND": "postgres",
        "TUCO_DATABASE_URL": pg_dsn,
        "TUCO_LOG_LEVEL": "warning",
    }
    ran = subprocess.run(
        [*python, "-I", "-S", str(ROOT / "tests" / "serverless" / "replay_events.py"), str(task)],
        input=json.dumps(_events()),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    lines = [line for line in ran.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, ran.stdout[-3000:]
    result: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return result


def _check(result: dict[str, Any], task: Path, suffix: str, machine: str) -> None:
    """The compiled build answered every event from the unpacked archive alone, on ``machine``."""
    assert result["machine"] == machine
    assert result["tuco_file"].startswith(str(task))
    assert result["asyncpg_file"].startswith(str(task))
    assert result["build"] == "compiled"
    assert result["service_file"] == str(task / "tuco" / f"service{suffix}")
    assert not any("site-packages" in entry or ".venv" in entry for entry in result["path"])
    statuses = [answer["statusCode"] for answer in result["answers"]]
    assert statuses == [201, 200, 201, 200, 405, 200, 404] * 2
    for offset in (0, 7):
        assert body_of(result["answers"][offset]) == b""
        assert body_of(result["answers"][offset + 1]) == b"Hello, key-value store!"
        assert body_of(result["answers"][offset + 3]) == bytes(range(256))
        assert json.loads(body_of(result["answers"][offset + 6]))["error"] == "no_such_key"


def _timings(archive: Path, result: dict[str, Any]) -> str:
    warm = statistics.median(result["warm_seconds"])
    unpacked = sum(info.file_size for info in zipfile.ZipFile(archive).infolist())
    return (
        f"archive {archive.stat().st_size / 1e6:.1f} MB, unpacked {unpacked / 1e6:.1f} MB; "
        f"cold start (import to first answer) {result['cold_start_seconds'] * 1000:.0f} ms "
        f"(import {result['import_seconds'] * 1000:.0f} ms); warm invocation median {warm * 1000:.2f} ms"
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_the_x86_64_archive_answers_the_same_events_in_a_clean_interpreter(tmp_path: Path, pg_dsn: str) -> None:
    """The zip holds tuco and its pinned wheels; python -I -S with nothing but the unpacked dir answers the events."""
    archive = _package("x86_64", tmp_path)
    names = zipfile.ZipFile(archive).namelist()
    assert "tuco/serverless.py" in names
    assert any(
        name.startswith("asyncpg/protocol/protocol.cpython-") and name.endswith("x86_64-linux-gnu.so") for name in names
    )
    assert not any(name.startswith("uvloop/") for name in names)
    # The compiled build for this CPU: each compiled module an extension, beside its source, and mypyc's runtime.
    for module in (*COMPILED, *NATIVE):
        assert f"{module.rpartition('.')[0]}.cpython-311-x86_64-linux-gnu.so" in names, module
    assert [name for name in names if name.endswith("__mypyc.cpython-311-x86_64-linux-gnu.so") and "/" not in name]
    task = _unpacked(archive, tmp_path)
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    result = _replay([str(base_python)], task, pg_dsn, tmp_path)
    _check(result, task, ".cpython-311-x86_64-linux-gnu.so", "x86_64")
    print(f"\n{_timings(archive, result)}")


EM_AARCH64 = 183  # ELF e_machine of arm64
ARM64_SYSROOT = ROOT / "build" / "cross" / "arm64" / "sysroot"  # Debian's arm64 python3.11 (scripts/_env.sh)


def _elf_machine(data: bytes) -> tuple[bytes, int]:
    """The ELF identification (magic, class, byte order) and ``e_machine`` of a little-endian ELF file."""
    return data[:6], int.from_bytes(data[18:20], "little")


def _glibc_versions(objdump: str, path: Path) -> set[str]:
    """The ``GLIBC_x.y`` versions of the symbols ``path`` takes from the C library (its dynamic symbol table)."""
    table = subprocess.run([objdump, "-T", str(path)], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\bGLIBC_[0-9.]+\b", table))


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(600)  # scripts/test cross-compiles before the suite; a stale build/compiled-arm64 takes ~3 min
def test_the_arm64_archive_is_cross_compiled_and_answers_under_qemu(tmp_path: Path, pg_dsn: str) -> None:
    """The arm64 zip ships the compiled build, cross-compiled here for aarch64 and glibc 2.34 (Lambda's Amazon Linux
    2023) at most; Debian's arm64 python3.11, run by qemu-aarch64-static, answers the events from it alone."""
    command("aarch64-linux-gnu-gcc", "Debian's gcc-aarch64-linux-gnu: scripts/test installs it")
    objdump = command("aarch64-linux-gnu-objdump", "Debian's binutils-aarch64-linux-gnu: scripts/test installs it")
    qemu = command("qemu-aarch64-static", "Debian's qemu-user-static: scripts/test installs it")
    archive = _package("arm64", tmp_path)
    names = zipfile.ZipFile(archive).namelist()
    suffix = ".cpython-311-aarch64-linux-gnu.so"
    for module in (*COMPILED, *NATIVE):
        assert f"{module.rpartition('.')[0]}{suffix}" in names, module
        assert module in names, module  # beside its source, as in the wheel
    runtime = [name for name in names if name.endswith(f"__mypyc{suffix}") and "/" not in name]
    assert len(runtime) == 1
    ours = [name for name in names if name.startswith("tuco/") and name.endswith(".so")]
    assert sorted(ours) == sorted(f"{module.rpartition('.')[0]}{suffix}" for module in (*COMPILED, *NATIVE))
    assert any(name.startswith("asyncpg/protocol/protocol.cpython-") and name.endswith(suffix) for name in names)
    assert not any(name.startswith("uvloop/") for name in names)
    task = _unpacked(archive, tmp_path)
    extensions = sorted(path for path in task.rglob("*.so*") if path.is_file())
    assert all(path.name.endswith(suffix) or ".so." in path.name for path in extensions)
    # Every extension, ours and the wheels', is a 64-bit little-endian aarch64 ELF file.
    elf = {_elf_machine(path.read_bytes()[:20]) for path in extensions}
    assert elf == {(b"\x7fELF\x02\x01", EM_AARCH64)}
    # Ours ask the C library for glibc 2.17's symbols only (aarch64's first glibc); nothing for more than 2.34.
    versions = {path.relative_to(task).as_posix(): _glibc_versions(objdump, path) for path in extensions}
    assert set().union(*(versions[name] for name in [*ours, *runtime])) == {"GLIBC_2.17"}
    newest = max(tuple(map(int, v.removeprefix("GLIBC_").split("."))) for v in set().union(*versions.values()))
    assert newest <= (2, 34), newest
    python = ARM64_SYSROOT / "usr" / "bin" / "python3.11"
    assert python.is_file(), "scripts/package-serverless arm64 fills build/cross/arm64/sysroot"
    result = _replay([qemu, "-L", str(ARM64_SYSROOT), str(python)], task, pg_dsn, tmp_path)
    _check(result, task, suffix, "aarch64")
    print(f"\nunder qemu: {_timings(archive, result)}; glibc needed at most {'.'.join(map(str, newest))}")


def test_the_sam_template_names_handlers_that_exist_and_takes_the_url_from_a_secret() -> None:
    """Every Handler in template.yaml is a function of tuco.serverless, and TUCO_DATABASE_URL resolves a secret."""
    from tuco import serverless

    text = (ROOT / "deploy" / "serverless" / "template.yaml").read_text()
    handlers = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("Handler:")]
    assert sorted(handlers) == [
        "tuco.serverless.delete_key",
        "tuco.serverless.get_key",
        "tuco.serverless.handler",
        "tuco.serverless.put_key",
    ]
    assert all(callable(getattr(serverless, name.rsplit(".", 1)[1])) for name in handlers)
    url_line = next(line for line in text.splitlines() if "TUCO_DATABASE_URL:" in line)
    assert "{{resolve:secretsmanager:" in url_line
    assert "Runtime: python3.11" in text
