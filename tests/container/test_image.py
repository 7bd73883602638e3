"""What the built image holds: the virtualenv and nothing to build with, a non-root user, the documented entry point,
health check and OCI labels, and none of the build machine's pip settings or CA certificates."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

import tuco
from tests.container.conftest import IMAGE, ROOT
from tests.container.docker import Docker
from tuco._build import COMPILED, NATIVE

pytestmark = [pytest.mark.container, pytest.mark.xdist_group("container")]  # one engine, fixed host ports

BASE = "python:3.11-slim"


def _read(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    assert member is not None, name
    return member.read()


@pytest.fixture(scope="module")
def added(standins: Docker, image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Every regular file the Dockerfile adds over the base (the layers ``docker save`` lists after the base's)."""
    del image
    saved = tmp_path_factory.mktemp("save") / "image.tar"
    standins("save", "-o", str(saved), IMAGE, timeout=300)
    base_layers = len(standins.inspect(BASE)["RootFS"]["Layers"])
    files: dict[str, bytes] = {}
    with tarfile.open(saved) as outer:
        layers = json.loads(_read(outer, "manifest.json"))[0]["Layers"]
        assert len(layers) > base_layers
        for name in layers[base_layers:]:
            with tarfile.open(fileobj=io.BytesIO(_read(outer, name))) as layer:
                for member in layer.getmembers():
                    if member.isfile():
                        files[member.name] = _read(layer, member.name)
    return files


def test_labels_entry_point_command_user_and_health_check(docker: Docker) -> None:
    """OCI labels name the version, source and revision; ``tuco`` is the entry point and ``serve`` the command."""
    config = docker.inspect(IMAGE)["Config"]
    version = tuco.__version__  # the one source of the version (pyproject reads it too)
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.revision"] == revision
    assert "org.opencontainers.image.source" in labels
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert (config["Entrypoint"], config["Cmd"]) == (["tuco"], ["serve"])
    assert config["User"] == "10001:0"
    assert config["Healthcheck"]["Test"] == ["CMD", "tuco", "health"]
    assert (config["Volumes"], config["ExposedPorts"]) == ({"/data": {}}, {"8080/tcp": {}})
    env = dict(item.split("=", 1) for item in config["Env"])
    assert (env["TUCO_HOST"], env["TUCO_PORT"], env["TUCO_DATA_DIR"]) == ("0.0.0.0", "8080", "/data")


def test_the_final_stage_has_nothing_to_build_with(docker: Docker, added: dict[str, bytes]) -> None:
    """No pip, setuptools, wheel, compiler, wheel file, build tree or cache in the layers tuco adds or in the image."""
    suspicious = re.compile(
        r"(^|/)(pip|setuptools|wheel|_distutils_hack|pkg_resources)(/|-[0-9][^/]*\.dist-info/)|\.whl$|(^|/)\.cache/"
        r"|^src/|^tmp/|^root/|(^|/)(gcc|cc|make)$|build-ca\.pem$"
    )
    assert sorted(path for path in added if suspicious.search(path)) == []
    assert any(path.startswith("opt/tuco/lib/python3.11/site-packages/tuco/") for path in added)
    probe = docker(
        "run", "--rm", "--entrypoint", "python3", IMAGE, "-c",
        "import importlib.util as u, shutil; print([m for m in ('pip', 'setuptools', 'wheel') if u.find_spec(m)],"
        " [c for c in ('gcc', 'cc', 'make', 'pip', 'pip3', 'curl') if shutil.which(c)])",
    )  # fmt: skip
    assert probe.stdout == "[] []\n"


def test_the_image_serves_the_compiled_build(docker: Docker, added: dict[str, bytes]) -> None:
    """Every module of tuco._build.COMPILED and NATIVE is an extension in the image; `tuco --version` says compiled."""
    site = "opt/tuco/lib/python3.11/site-packages/"
    for module in (*COMPILED, *NATIVE):
        stem = site + module.rpartition(".")[0]
        assert [path for path in added if path.startswith(stem + ".cpython-311-") and path.endswith(".so")], module
    shown = docker("run", "--rm", IMAGE, "--version").stdout
    python = docker(
        "run", "--rm", "--entrypoint", "python3", IMAGE, "-c", "import platform; print(platform.python_version())"
    )
    assert shown == f"tuco {tuco.__version__} (compiled build, Python {python.stdout.strip()}, x86_64)\n"


def test_the_build_machines_pip_settings_and_ca_certificates_stay_out(docker: Docker, added: dict[str, bytes]) -> None:
    """The CA certificates and pip settings given to the build stage are in no added file, history entry or config."""
    certificates = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not certificates:
        pytest.skip("this machine gives the build no extra CA certificates")
    # A line from the middle of each certificate's base64 body identifies it wherever it was copied.
    marks = [cert.read_text().splitlines()[len(cert.read_text().splitlines()) // 2] for cert in certificates]
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE).stdout
    config = json.dumps(docker.inspect(IMAGE))
    for mark in marks:
        assert mark not in history
        assert mark not in config
        assert [path for path, content in added.items() if mark.encode() in content] == []
    assert "BUILD_CA_PEM" not in history and "PIP_" not in history
    assert "PIP_" not in config


def test_the_image_adds_at_most_60_mb_to_the_base(docker: Docker) -> None:
    """The layers tuco adds (virtualenv, user, /data) weigh at most 60 MB; both sizes are printed for the report.

    The bound was 50 MB before the request path was compiled: its extensions add about 6 MB (55 MB in all)."""
    size = docker.inspect(IMAGE)["Size"]
    base = docker.inspect(BASE)["Size"]
    print(f"\nimage {size / 1e6:.1f} MB, base {base / 1e6:.1f} MB, tuco adds {(size - base) / 1e6:.1f} MB")
    assert size - base <= 60_000_000
