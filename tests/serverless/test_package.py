"""The deployable archive: built by scripts/package-serverless, unpacked, imported by a clean interpreter."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.serverless.gateway import body_of, make_event
from tuco._build import COMPILED

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.slow
def test_the_x86_64_archive_answers_the_same_events_in_a_clean_interpreter(tmp_path: Path, pg_dsn: str) -> None:
    """The zip holds tuco and its pinned wheels; python -I -S with nothing but the unpacked dir answers the events."""
    out = tmp_path / "dist"
    built = subprocess.run(
        ["scripts/package-serverless", "x86_64"],
        cwd=ROOT,
        env={**os.environ, "TUCO_PACKAGE_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    archive = out / "tuco-serverless-x86_64.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "tuco/serverless.py" in names
    assert any(
        name.startswith("asyncpg/protocol/protocol.cpython-") and name.endswith("x86_64-linux-gnu.so") for name in names
    )
    assert not any(name.startswith("uvloop/") for name in names)
    # The compiled build for this CPU: each compiled module an extension, beside its source, and mypyc's runtime.
    for module in COMPILED:
        assert f"{module[: -len('.py')]}.cpython-311-x86_64-linux-gnu.so" in names, module
    assert [name for name in names if name.endswith("__mypyc.cpython-311-x86_64-linux-gnu.so") and "/" not in name]
    task = tmp_path / "task"  # Lambda's /var/task
    task.mkdir()
    zipfile.ZipFile(archive).extractall(task)

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
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    env = {
        "PATH": "/usr/bin:/bin",
        "TUCO_LOG_BACKEND": "postgres",
        "TUCO_DATABASE_URL": pg_dsn,
        "TUCO_LOG_LEVEL": "warning",
    }
    ran = subprocess.run(
        [str(base_python), "-I", "-S", str(ROOT / "tests" / "serverless" / "replay_events.py"), str(task)],
        input=json.dumps(events),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    lines = [line for line in ran.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, ran.stdout[-3000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["tuco_file"].startswith(str(task))
    assert result["asyncpg_file"].startswith(str(task))
    assert result["build"] == "compiled"
    assert result["service_file"] == str(task / "tuco" / "service.cpython-311-x86_64-linux-gnu.so")
    assert not any("site-packages" in entry or ".venv" in entry for entry in result["path"])
    statuses = [answer["statusCode"] for answer in result["answers"]]
    assert statuses == [201, 200, 201, 200, 405, 200, 404] * 2
    for offset in (0, 7):
        assert body_of(result["answers"][offset + 1]) == b"Hello, key-value store!"
        assert body_of(result["answers"][offset + 3]) == bytes(range(256))
        assert json.loads(body_of(result["answers"][offset + 6]))["error"] == "no_such_key"
    warm = statistics.median(result["warm_seconds"])
    unpacked = sum(info.file_size for info in zipfile.ZipFile(archive).infolist())
    print(
        f"\narchive {archive.stat().st_size / 1e6:.1f} MB, unpacked {unpacked / 1e6:.1f} MB; "
        f"cold start (import to first answer) {result['cold_start_seconds'] * 1000:.0f} ms "
        f"(import {result['import_seconds'] * 1000:.0f} ms); warm invocation median {warm * 1000:.2f} ms"
    )


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
