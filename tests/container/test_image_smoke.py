"""Smoke test of the built image, through the README's commands: a named volume, the published port, a graceful
``docker stop``, data that survives a new container, a non-root process, one line for a bad setting, TLS.

Every container here runs as the README runs it (``TUCO_AUTH=token`` with a bootstrap token mounted as a secret
file), and every request carries that token.
"""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.container import recipes
from tests.container.docker import Docker, wait_until_answers
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.container, pytest.mark.xdist_group("container")]  # one engine, fixed host ports


class Single:
    """One container started by the README's ``docker run`` in a temporary directory holding admin.token."""

    def __init__(self, docker: Docker, where: Path, image: str = "tuco:test") -> None:
        self.docker = docker
        self.where = where
        self.image = image
        self.container = docker.name("container")
        self.volume = docker.name("volume")
        self.port = free_port()
        assert docker.shell(recipes.TOKEN, where).returncode == 0
        self.token = (where / "admin.token").read_text()
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def sh(self, command: str) -> tuple[int, str, str]:
        line = recipes.adapt(command, container=self.container, volume=self.volume, port=self.port, image=self.image)
        result = self.docker.shell(line, self.where)
        return result.returncode, result.stdout, result.stderr

    def run(self, command: str = recipes.RUN, scheme: str = "http", **client: Any) -> None:
        code, _, err = self.sh(command)
        assert code == 0, err
        wait_until_answers(
            f"{scheme}://127.0.0.1:{self.port}/readyz", container=(self.docker, self.container), **client
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def json_logs(self) -> list[dict[str, object]]:
        out, err = self.docker.logs(self.container)
        return [json.loads(line) for line in (out + err).splitlines() if line.startswith("{")]


def test_put_and_get_through_the_published_port_with_a_named_volume(docker: Docker, tmp_path: Path) -> None:
    """The README's run command serves PUT 201 and GET 200 with the exact bytes on 127.0.0.1, its data in the volume."""
    single = Single(docker, tmp_path)
    single.run()
    code, out, err = single.sh(recipes.PUT + " -w '%{http_code}'")
    assert (code, out, err) == (0, "201", "")
    code, out, err = single.sh(recipes.GET + " -w ' %{http_code}'")
    assert (code, out, err) == (0, "hello 200", "")
    mounts = docker.inspect(single.container)["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts if m["Type"] == "volume"] == [
        ("volume", single.volume, "/data")
    ]
    listing = docker("run", "--rm", "--entrypoint", "ls", "-v", f"{single.volume}:/data", "tuco:test", "/data")
    assert listing.stdout.split() == ["tuco.log"]


def test_client_commands_run_through_the_entrypoint(docker: Docker, tmp_path: Path) -> None:
    """``docker exec NAME tuco get`` and ``docker run IMAGE get`` use the entrypoint ``tuco`` and print the value."""
    single = Single(docker, tmp_path)
    single.run()
    assert httpx.put(f"{single.url}/v1/key/greeting", content=b"hello", headers=single.headers).status_code == 201
    assert single.sh(recipes.CLI_GET) == (0, "hello", "")
    url = f"http://{docker.ip(single.container)}:8080"
    result = docker("run", "--rm", "-e", f"TUCO_TOKEN={single.token}", "tuco:test", "get", "greeting", "--url", url)
    assert (result.returncode, result.stdout) == (0, "hello")
    missing = docker(
        "run", "--rm", "-e", f"TUCO_TOKEN={single.token}", "tuco:test", "get", "nope", "--url", url, check=False
    )
    assert (missing.returncode, missing.stdout) == (1, "")


def test_docker_stop_is_graceful_within_the_grace_period_and_a_new_container_has_the_data(
    docker: Docker, tmp_path: Path
) -> None:
    """``docker stop`` ends tuco with exit code 0 well inside its 10 s grace, logging the stop; the data stays."""
    single = Single(docker, tmp_path)
    single.run()
    for index in range(5):
        response = httpx.put(f"{single.url}/v1/key/k{index}", content=f"v{index}".encode(), headers=single.headers)
        assert response.status_code == 201
    started = time.monotonic()
    assert single.sh(recipes.STOP)[0] == 0
    elapsed = time.monotonic() - started
    state = docker.inspect(single.container)["State"]
    assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == ("exited", 0, False)
    assert elapsed < 10, f"docker stop took {elapsed:.2f} s"
    events = [(line["event"], line.get("signal"), line.get("last_sequence")) for line in single.json_logs()]
    assert events[-4:] == [
        ("stopping", 15, None),
        ("connections_closed", None, None),
        ("log_closed", None, None),
        ("stopped", None, 5),
    ]
    assert single.sh(recipes.REMOVE)[0] == 0
    single.run()  # a new container on the same volume
    for index in range(5):
        response = httpx.get(f"{single.url}/v1/key/k{index}", headers=single.headers)
        assert (response.status_code, response.content) == (200, f"v{index}".encode())


def test_the_server_runs_as_a_non_root_user(docker: Docker, tmp_path: Path) -> None:
    """Every process of the container (docker-init and tuco serve) is uid 10001, not root, and /data is its own."""
    single = Single(docker, tmp_path)
    single.run()
    top = docker("top", single.container, "-o", "pid,uid,args").stdout.splitlines()
    processes = sorted((args, uid) for _, uid, args in (line.split(None, 2) for line in top[1:]))
    assert processes == [
        ("/opt/tuco/bin/python3 /opt/tuco/bin/tuco serve", "10001"),
        ("/sbin/docker-init -- tuco serve", "10001"),
    ]
    assert docker.inspect(single.container)["Config"]["User"] == "10001:0"
    result = docker("exec", single.container, "sh", "-c", "id -u; stat -c %u /data")
    assert result.stdout.split() == ["10001", "10001"]


def test_a_bad_setting_exits_2_with_one_line(docker: Docker) -> None:
    """TUCO_PORT=eighty stops start-up with exit code 2 and one line on stderr naming the setting, nothing on stdout."""
    name = docker.name("container")
    docker("run", "-d", "--name", name, "-e", "TUCO_AUTH=none", "-e", "TUCO_PORT=eighty", "tuco:test")
    assert docker.wait_exit(name) == 2
    out, err = docker.logs(name)
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("tuco: invalid configuration: TUCO_PORT: ")
    assert "'eighty'" in err


def test_it_runs_with_a_read_only_root_filesystem(docker: Docker, tmp_path: Path) -> None:
    """With ``--read-only`` (as the Kubernetes manifests run it) tuco serves and writes only to the /data volume."""
    single = Single(docker, tmp_path)
    single.run(recipes.RUN.replace("docker run -d", "docker run -d --read-only"))
    assert docker.inspect(single.container)["HostConfig"]["ReadonlyRootfs"] is True
    assert httpx.put(f"{single.url}/v1/key/k", content=b"v", headers=single.headers).status_code == 201
    assert httpx.get(f"{single.url}/v1/key/k", headers=single.headers).content == b"v"


def test_the_health_check_needs_no_curl_and_reports_both_ways(docker: Docker, tmp_path: Path) -> None:
    """The image's HEALTHCHECK (``tuco health``) turns the container healthy; pointed at nothing it exits 1."""
    single = Single(docker, tmp_path)
    single.run(recipes.RUN.replace("docker run -d", "docker run -d --health-interval 1s"))
    deadline = time.monotonic() + 30
    while docker.inspect(single.container)["State"]["Health"]["Status"] != "healthy":
        assert time.monotonic() < deadline, docker.inspect(single.container)["State"]["Health"]
        time.sleep(0.2)
    log = docker.inspect(single.container)["State"]["Health"]["Log"]
    assert {entry["ExitCode"] for entry in log} == {0}
    assert docker("exec", single.container, "sh", "-c", "command -v curl wget || true").stdout == ""
    bad = docker("exec", single.container, "tuco", "health", "--url", "http://127.0.0.1:1", check=False)
    assert (bad.returncode, bad.stdout, bad.stderr.count("\n")) == (1, "", 1)
    assert bad.stderr.startswith("tuco: unhealthy: cannot reach http://127.0.0.1:1")
    ready = docker("exec", single.container, "tuco", "health", "--ready", check=False)
    assert (ready.returncode, ready.stdout, ready.stderr) == (0, "", "")


def test_tls_with_mounted_certificate_files(docker: Docker, tmp_path: Path) -> None:
    """Certificate and key files from a trustme CA, mounted read-only, make tuco serve HTTPS only, health included."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    (tmp_path / "tls").mkdir()
    cert.private_key_pem.write_to_path(str(tmp_path / "tls" / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "tls" / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "tls" / "ca.pem"))
    single = Single(docker, tmp_path)
    assert single.sh(recipes.TLS_FILES)[0] == 0
    context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
    single.run(recipes.TLS_RUN, scheme="https", verify=context)
    url = f"https://localhost:{single.port}"
    put = httpx.put(f"{url}/v1/key/greeting", content=b"hello", headers=single.headers, verify=context)
    assert put.status_code == 201
    assert single.sh(recipes.TLS_GET + " -w ' %{http_code}'") == (0, "hello 200", "")
    try:
        plain = httpx.get(f"http://127.0.0.1:{single.port}/healthz", timeout=5)
    except httpx.HTTPError:
        plain = None
    assert plain is None, "plain HTTP was answered on the TLS port"
    health = docker("exec", single.container, "tuco", "health", check=False)
    assert (health.returncode, health.stderr) == (0, "")
    verified = docker("exec", single.container, "tuco", "health", "--cacert", "/run/secrets/tls/ca.pem", check=False)
    assert (verified.returncode, verified.stderr) == (0, "")


def test_a_data_directory_tuco_cannot_write_is_one_line_and_exit_1(docker: Docker, tmp_path: Path) -> None:
    """A root-owned bind mount on /data (an operator's slip) stops start-up in one line naming the file, exit 1."""
    (tmp_path / "data").mkdir(mode=0o755)
    name = docker.name("container")
    docker("run", "-d", "--name", name, "-e", "TUCO_AUTH=none", "-v", f"{tmp_path / 'data'}:/data", "tuco:test")
    assert docker.wait_exit(name) == 1
    out, err = docker.logs(name)
    assert err == "tuco: cannot create /data/tuco.log: Permission denied\n"
    assert [line["event"] for line in map(json.loads, out.splitlines())] == [
        "starting",
        "authentication_disabled",
        "start_failed",
    ]
