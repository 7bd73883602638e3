"""The docker command line for the container tests: every container, volume and network a test makes is removed."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx


class Docker:
    """Run ``docker`` against one engine; remember what was made so that :meth:`clean_up` removes it."""

    def __init__(self, host: str, timings: dict[str, float] | None = None) -> None:
        self.host = host
        self.env = {**os.environ, "DOCKER_HOST": host}
        self.timings = timings if timings is not None else {}
        self._made: list[tuple[str, str]] = []

    def scoped(self) -> Docker:
        """The same engine, with its own list of things to remove."""
        return Docker(self.host, self.timings)

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def shell(self, command: str, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        """Run a README command line with bash in ``cwd`` (extra environment variables added)."""
        return subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def name(self, kind: str) -> str:
        """A fresh name for a container, volume or network, removed by :meth:`clean_up`."""
        name = f"tuco-test-{uuid.uuid4().hex[:10]}"
        self._made.append((kind, name))
        return name

    def made(self, kind: str, name: str) -> None:
        """Remember something made by other means (a Compose project's resources go with ``down``)."""
        self._made.append((kind, name))

    def clean_up(self) -> None:
        for kind, name in reversed(self._made):
            if kind == "container":
                self("rm", "-f", "-v", name, check=False)
            elif kind == "volume":
                self("volume", "rm", "-f", name, check=False)
            elif kind == "network":
                self("network", "rm", name, check=False)
        self._made.clear()

    def inspect(self, *names: str) -> Any:
        result = json.loads(self("inspect", *names).stdout)
        return result[0] if len(names) == 1 else result

    def ip(self, container: str) -> str:
        """The container's address on its (first) network: the host reaches it over the bridge."""
        networks = self.inspect(container)["NetworkSettings"]["Networks"]
        return str(next(iter(networks.values()))["IPAddress"])

    def logs(self, container: str) -> tuple[str, str]:
        """The container's standard output and standard error so far."""
        result = self("logs", container)
        return result.stdout, result.stderr

    def wait_exit(self, container: str, timeout: float = 60) -> int:
        return int(self("wait", container, timeout=timeout).stdout.strip())


def wait_until_answers(
    url: str, timeout: float = 60, container: tuple[Docker, str] | None = None, **client: Any
) -> None:
    """Poll ``url`` until it answers 200 (a container that exits meanwhile fails at once, with its logs)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2, **client)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        if container is not None:
            docker, name = container
            if docker.inspect(name)["State"]["Status"] == "exited":
                raise AssertionError(f"{name} exited: {docker.logs(name)}")
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s (last: {last!r})")
