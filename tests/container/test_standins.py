"""The stand-in for the official postgres image honours the parts of its interface deploy/compose.yaml uses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.container.docker import Docker

pytestmark = [pytest.mark.container, pytest.mark.xdist_group("container")]  # one engine, fixed host ports


def test_postgres_standin_takes_its_password_user_and_database_from_the_official_variables(
    docker: Docker, tmp_path: Path
) -> None:
    """POSTGRES_PASSWORD_FILE, POSTGRES_USER and POSTGRES_DB make a database pg_isready and a password login reach."""
    (tmp_path / "password").write_text("s3cret")
    name = docker.name("container")
    volume = docker.name("volume")
    docker(
        "run", "-d", "--name", name, "-v", f"{volume}:/var/lib/postgresql/data",
        "-v", f"{tmp_path / 'password'}:/run/secrets/pw:ro",
        "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/pw", "-e", "POSTGRES_USER=app", "-e", "POSTGRES_DB=appdb",
        "postgres:15",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while docker("exec", name, "pg_isready", "-h", "127.0.0.1", "-U", "app", "-d", "appdb", check=False).returncode:
        assert time.monotonic() < deadline, docker.logs(name)
        time.sleep(0.3)
    query = ["psql", "-h", "127.0.0.1", "-U", "app", "-d", "appdb", "-Atc", "select current_user, current_database()"]
    good = docker("exec", "-e", "PGPASSWORD=s3cret", name, *query, check=False)
    assert (good.returncode, good.stdout) == (0, "app|appdb\n")
    bad = docker("exec", "-e", "PGPASSWORD=wrong", name, *query, check=False)
    assert bad.returncode == 2
    assert "password authentication failed" in bad.stderr


def test_postgres_standin_refuses_to_initialise_without_a_password(docker: Docker) -> None:
    """Like the official image, an empty data directory and no POSTGRES_PASSWORD(_FILE) is exit 1 with the reason."""
    name = docker.name("container")
    docker("run", "-d", "--name", name, "postgres:15")
    assert docker.wait_exit(name) == 1
    assert "POSTGRES_PASSWORD" in docker.logs(name)[1]
