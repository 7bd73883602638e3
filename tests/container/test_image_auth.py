"""The image follows the rule of issue 12 for a non-loopback address: it listens on 0.0.0.0, so it refuses to start
until the operator chooses ``TUCO_AUTH``; ``token`` takes the admin token from a file mounted as a secret.

These tests are written against the contract (``TUCO_AUTH`` unset, ``token`` or ``none``;
``TUCO_BOOTSTRAP_TOKEN_FILE``; clients send ``Authorization: Bearer``; ``/healthz`` open) and skip until the
setting exists in this build, that is until the auth work is merged.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.container import recipes
from tests.container.docker import Docker
from tests.container.test_image_smoke import Single

pytestmark = [pytest.mark.container, pytest.mark.xdist_group("container")]  # one engine, fixed host ports


def test_all_interfaces_without_tuco_auth_exits_2_with_one_line(docker: Docker) -> None:
    """The image's 0.0.0.0 with TUCO_AUTH unset stops start-up: exit code 2, one line on stderr naming TUCO_AUTH."""
    name = docker.name("container")
    docker("run", "-d", "--name", name, "tuco:test")
    assert docker.wait_exit(name) == 2
    out, err = docker.logs(name)
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("tuco: ")
    assert "TUCO_AUTH" in err


def test_token_auth_with_the_bootstrap_token_mounted_as_a_secret_file(docker: Docker, tmp_path: Path) -> None:
    """As the README runs it: the secret file's token is admitted, none or another is 401, /healthz stays open."""
    single = Single(docker, tmp_path)
    single.run()
    key = f"{single.url}/v1/key/greeting"
    assert httpx.put(key, content=b"hello").status_code == 401
    assert httpx.put(key, content=b"hello", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    assert httpx.put(key, content=b"hello", headers=single.headers).status_code == 201
    assert httpx.get(key).status_code == 401
    response = httpx.get(key, headers=single.headers)
    assert (response.status_code, response.content) == (200, b"hello")
    assert httpx.get(f"{single.url}/healthz").status_code == 200
    health = docker("exec", single.container, "tuco", "health", check=False)
    assert (health.returncode, health.stderr) == (0, "")


def test_client_commands_take_the_token_from_tuco_token(docker: Docker, tmp_path: Path) -> None:
    """``tuco get`` with TUCO_TOKEN prints the value; without it exit 6, the 401 and the option giving a token."""
    single = Single(docker, tmp_path)
    single.run()
    assert httpx.put(f"{single.url}/v1/key/greeting", content=b"hello", headers=single.headers).status_code == 201
    assert single.sh(recipes.CLI_GET) == (0, "hello", "")
    anonymous = docker("exec", single.container, "tuco", "get", "greeting", check=False)
    assert (anonymous.returncode, anonymous.stdout, anonymous.stderr.splitlines()) == (  # 401: exit 6
        6,
        "",
        [
            "tuco: 401 unauthorized: authentication required: send Authorization: Bearer <token> with a valid token",
            "tuco: give the token with --token-file FILE (or TUCO_TOKEN_FILE, or TUCO_TOKEN)",
        ],
    )


def test_tuco_auth_none_starts_with_a_warning(docker: Docker, tmp_path: Path) -> None:
    """TUCO_AUTH=none on 0.0.0.0 is the operator's explicit choice: it serves anyone, and says so in a warning."""
    single = Single(docker, tmp_path)
    single.run(recipes.RUN.replace("-e TUCO_AUTH=token", "-e TUCO_AUTH=none"))
    assert httpx.put(f"{single.url}/v1/key/k", content=b"v").status_code == 201
    warnings = [line for line in single.json_logs() if line.get("level") == "warning"]
    assert any("auth" in json.dumps(line).lower() for line in warnings), single.json_logs()
