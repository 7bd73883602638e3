"""deploy/compose.yaml as the README runs it: PostgreSQL, three tuco replicas and HAProxy, started with
``docker-compose up -d`` from a copy of deploy/ with fresh secrets, then taken down with its volume.

Requests go to the published balancer port on 127.0.0.1 and to the replicas' addresses on the stack's own
network (the host reaches them over the bridge the stack made).
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.container import recipes
from tests.container.conftest import IMAGE, ROOT
from tests.container.docker import Docker, wait_until_answers
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.container, pytest.mark.xdist_group("container")]  # one engine, fixed host ports

REPLICAS = ("tuco1", "tuco2", "tuco3")


class Stack:
    """A running copy of the Compose recipe."""

    def __init__(self, docker: Docker, where: Path) -> None:
        self.docker = docker
        self.where = where
        self.port = free_port()
        self.env = {
            "TUCO_IMAGE": IMAGE,
            "TUCO_PUBLISH": f"127.0.0.1:{self.port}",
            "COMPOSE_PROJECT_NAME": f"tucotest{uuid.uuid4().hex[:8]}",
        }

    def sh(self, command: str, timeout: float = 300) -> tuple[int, str, str]:
        result = self.docker.shell(recipes.adapt(command, port=self.port), self.where, timeout=timeout, **self.env)
        return result.returncode, result.stdout, result.stderr

    def up(self) -> None:
        for command in (recipes.COMPOSE_SECRETS, recipes.COMPOSE_UP):
            code, _, err = self.sh(command)
            assert code == 0, err
        self.token = (self.where / "deploy" / "secrets" / "tuco_bootstrap_token").read_text()
        self.headers = {"Authorization": f"Bearer {self.token}"}
        wait_until_answers(f"{self.url}/readyz")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def container(self, service: str) -> str:
        code, out, err = self.sh(f"docker-compose -f deploy/compose.yaml ps -q {service}")
        assert code == 0 and out.strip(), err
        return out.strip()

    def replica_url(self, service: str) -> str:
        return f"http://{self.docker.ip(self.container(service))}:8080"

    def wait_healthy(self, service: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.docker.inspect(self.container(service))["State"].get("Health", {}).get("Status") != "healthy":
            assert time.monotonic() < deadline, f"{service} did not turn healthy"
            time.sleep(0.2)

    def listing(self, service: str, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` on one replica, after it caught up with every acknowledged write."""
        import base64

        base = self.replica_url(service)
        caught_up = httpx.get(f"{base}/v1/key/{prefix}none", params={"consistent": "true"}, headers=self.headers)
        assert caught_up.status_code == 404
        items: dict[str, bytes] = {}
        params = {"prefix": prefix, "limit": "1000"}
        while True:
            page = httpx.get(f"{base}/v1/keys", params=params, headers=self.headers).json()
            items.update((item["key"], base64.b64decode(item["value"])) for item in page["items"])
            if page["next_page_token"] is None:
                return items
            params["page_token"] = page["next_page_token"]


@pytest.fixture
def stack(docker: Docker, tmp_path: Path) -> Iterator[Stack]:
    """The recipe up, from a copy of deploy/ (the secrets are written there, not in the checkout)."""
    (tmp_path / "deploy").mkdir()
    for name in ("compose.yaml", "haproxy.cfg", "make-secrets"):
        shutil.copy2(ROOT / "deploy" / name, tmp_path / "deploy" / name)
    stack = Stack(docker, tmp_path)
    try:
        stack.up()
        yield stack
    finally:
        code, _, err = stack.sh(recipes.COMPOSE_DOWN)
        assert code == 0, err


def test_the_recipe_declares_health_checks_init_secrets_and_a_longer_stop_grace() -> None:
    """Each replica has init, a health check, both secrets as files, waits for a healthy database and outwaits
    tuco's grace."""
    recipe = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services: dict[str, Any] = recipe["services"]
    assert sorted(services) == ["balancer", "postgres", *REPLICAS]
    for name in REPLICAS:
        service = services[name]
        assert service["init"] is True
        assert service["healthcheck"]["test"] == ["CMD", "tuco", "health", "--ready"]
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert sorted(service["secrets"]) == ["tuco_bootstrap_token", "tuco_database_url"]
        # The URL (with the password) is read from the secret file by tuco itself: in no environment at all.
        assert service["environment"]["TUCO_DATABASE_URL_FILE"] == "/run/secrets/tuco_database_url"
        assert "TUCO_DATABASE_URL" not in service["environment"] and "entrypoint" not in service
        environment = service["environment"]
        # Drained first (HAProxy checks every 1 s and takes a replica out after 2 failures), then the grace.
        assert float(environment["TUCO_SHUTDOWN_DRAIN_SECONDS"]) == 3
        grace = float(environment["TUCO_SHUTDOWN_DRAIN_SECONDS"]) + float(environment["TUCO_SHUTDOWN_GRACE_SECONDS"])
        assert float(service["stop_grace_period"].removesuffix("s")) > grace
    assert services["balancer"]["depends_on"] == {name: {"condition": "service_healthy"} for name in REPLICAS}
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert {name: value["file"] for name, value in recipe["secrets"].items()} == {
        "postgres_password": "./secrets/postgres_password",
        "tuco_database_url": "./secrets/tuco_database_url",
        "tuco_bootstrap_token": "./secrets/tuco_bootstrap_token",
    }


def test_writes_on_any_replica_are_read_on_all_and_through_the_balancer(stack: Stack) -> None:
    """A key written on one replica (or through the balancer) is read with its exact value on all three."""
    code, out, err = stack.sh(recipes.COMPOSE_PUT + " -w '%{http_code}'")
    assert (code, out) == (0, "201"), err
    urls = {service: stack.replica_url(service) for service in REPLICAS}
    for writer, url in urls.items():
        response = httpx.put(f"{url}/v1/key/from-{writer}", content=writer.encode(), headers=stack.headers)
        assert response.status_code == 201
    expected = [("greeting", b"hello")] + [(f"from-{writer}", writer.encode()) for writer in REPLICAS]
    for reader, url in urls.items():
        for key, value in expected:
            response = httpx.get(f"{url}/v1/key/{key}", params={"consistent": "true"}, headers=stack.headers)
            assert (reader, response.status_code, response.content) == (reader, 200, value)
    password = (stack.where / "deploy" / "secrets" / "postgres_password").read_text().strip()
    for container in (stack.container(service) for service in REPLICAS):
        state = stack.docker.inspect(container)
        assert (state["HostConfig"]["Init"], state["Config"]["StopTimeout"]) == (True, 35)
        assert not any(password in item for item in state["Config"]["Env"])
        environs = stack.docker("exec", container, "sh", "-c", "cat /proc/[0-9]*/environ | tr '\\0' '\\n'").stdout
        assert "TUCO_DATABASE_URL_FILE=" in environs and password not in environs


def test_stopping_a_replica_mid_burst_loses_no_acknowledged_write(stack: Stack) -> None:
    """tuco2 stopped during a write burst: every 201 is kept, the balancer keeps serving, the replicas end equal."""
    acknowledged: dict[str, bytes] = {}
    failed: list[tuple[str, object]] = []
    after_stop: list[str] = []
    stopped = threading.Event()
    finish = threading.Event()

    def write(worker: int) -> None:
        with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30) as client:
            for number in range(1_000_000):
                if finish.is_set():
                    return
                key, value = f"burst-{worker}-{number}", f"{worker}:{number}".encode()
                try:
                    status: object = client.put(f"/v1/key/{key}", content=value).status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                if status == 201:
                    acknowledged[key] = value
                    if stopped.is_set():
                        after_stop.append(key)
                else:
                    failed.append((key, status))

    writers = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in writers:
        thread.start()
    try:
        time.sleep(1.5)
        started = time.monotonic()
        code, _, err = stack.sh(recipes.COMPOSE_STOP_ONE)
        stop_seconds = time.monotonic() - started  # 3 s of drain and a fraction; 35 s if it took the SIGKILL
        assert code == 0, err
        stopped.set()
        time.sleep(2.0)
    finally:
        finish.set()
        for thread in writers:
            thread.join(60)
    state = stack.docker.inspect(stack.container("tuco2"))["State"]
    out, err = stack.docker.logs(stack.container("tuco2"))
    if (state["Status"], state["ExitCode"]) != ("exited", 0):  # the whole log: an assertion's repr is cut short
        print(f"\ntuco2 stopped after {stop_seconds:.1f} s, {state}\nstdout:\n{out[-8000:]}\nstderr:\n{err[-4000:]}")
    assert (state["Status"], state["ExitCode"]) == ("exited", 0), stop_seconds
    print(f"\n{len(acknowledged)} writes acknowledged, {len(after_stop)} after the stop, {len(failed)} refused")
    # Each failure with what the balancer logged of it (a replica's close raced with a request: "SD" or "SH").
    balancer_log = "".join(stack.docker.logs(stack.container("balancer")))
    assert failed == [], (failed, [line for line in balancer_log.splitlines() if "PUT" in line and " 201 " not in line])
    assert len(after_stop) > 0
    code, _, err = stack.sh(recipes.COMPOSE_START_ONE)
    assert code == 0, err
    stack.wait_healthy("tuco2")
    listings = {service: stack.listing(service, "burst-") for service in REPLICAS}
    assert listings["tuco1"] == acknowledged
    assert listings["tuco2"] == listings["tuco1"]
    assert listings["tuco3"] == listings["tuco1"]
