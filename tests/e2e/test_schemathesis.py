"""schemathesis over the OpenAPI document, against real servers: no 5xx, nothing outside the document.

The run generates requests from ``/v1/openapi.json`` as the server serves it (fuzzing, then
stateful sequences along the document's links) and checks every answer: no server error,
every status, content type, header and body as documented, ``Allow`` on 405 as documented,
undocumented methods refused. Two checks are left out on purpose: ``positive_data_acceptance``
and ``negative_data_rejection`` judge requests by the schema alone, and some of tuco's rules
join parameters (``ttl`` with ``lease``, ``prefix`` with ``key``, a long poll's cap of 300 s)
in ways OpenAPI parameters cannot state. The watch stream (``GET /v1/watch``) never ends, so
it is left to tests/e2e/test_watch.py; its HEAD is checked here. The coverage phase is off: it
sends long polls with the default 30 s timeout, which the hooks cannot shorten.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.process import TucoProcess
from tuco.http.openapi import document

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,allow_header_conformance,unsupported_method"
)


BOOTSTRAP = "schemathesis-0123456789abcdefghijklmnopqrstuvwxyz"


def _operations() -> int:
    paths = document()["paths"]
    return sum(1 for item in paths.values() for method in item if method != "parameters")


def _run(url: str, tmp_path: Path, *extra: str) -> str:
    """st run over the served document; assert every generated case passed; its output."""
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/v1/openapi.json",
        "--checks",
        CHECKS,
        "--exclude-operation-id",
        "getWatch",
        "--phases",
        "examples,fuzzing,stateful",
        "--max-examples",
        "30",
        "--request-timeout",
        "5",
        "--workers",
        "1",
        "--no-color",
        *extra,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print(result.stdout)
    counts = re.search(r"Test cases:\s+(\d+) generated, (\d+) passed\n", result.stdout)
    assert counts is not None, result.stdout[-3000:]
    generated, passed = map(int, counts.groups())
    assert generated == passed and generated >= 300
    selected = re.search(r"Selected: (\d+)/(\d+)\n\s+Tested: (\d+)\n", result.stdout)
    assert selected is not None, result.stdout[-3000:]
    chosen, total, tested = map(int, selected.groups())
    assert chosen == tested == total - 1 and total >= _operations() - 1  # all but the watch stream
    return result.stdout


@pytest.mark.timeout(320)  # st run's own bound is 300 s; on a busy two-core machine a run takes 60-150 s
def test_schemathesis_finds_nothing_outside_the_document(frontend: tuple[str, str], tmp_path: Path) -> None:
    """Fuzzing and stateful runs over every operation end with "No issues found" on each front end and backend."""
    _, url = frontend
    _run(url, tmp_path)


@pytest.mark.timeout(320)
def test_schemathesis_with_authentication_on(tuco: Callable[..., TucoProcess], tmp_path: Path) -> None:
    """With TUCO_AUTH=token and the admin's bearer token, every answer is documented too (tokens created included)."""
    server = tuco(TUCO_AUTH="token", TUCO_BOOTSTRAP_TOKEN=BOOTSTRAP)
    _run(server.url, tmp_path, "--header", f"Authorization: Bearer {BOOTSTRAP}")
