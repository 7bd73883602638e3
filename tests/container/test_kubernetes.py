"""deploy/kubernetes/ validates against the Kubernetes schemas (offline, kubernetes-validate --strict) and says
what the issues ask of it: probes, a grace above tuco's, resources, a locked-down container of a non-root user and
group, secrets as files only, TLS to the pods, a NetworkPolicy per workload, an image pinned by digest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.container import recipes
from tests.container.conftest import ROOT

MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def _documents() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def _validate(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env={**os.environ, "PATH": path}, capture_output=True, text=True
    )


def test_the_manifests_validate_against_the_kubernetes_schemas() -> None:
    """The README's kubernetes-validate command passes every resource of every manifest, strictly."""
    result = _validate(recipes.KUBERNETES_VALIDATE, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in (result.stdout + result.stderr).splitlines() if " passed for resource " in line]
    assert len(passed) == len(_documents()) == 7


def test_a_misspelt_field_fails_validation(tmp_path: Path) -> None:
    """The same command rejects a manifest with a field the schema does not have (strict mode is on)."""
    (tmp_path / "deploy" / "kubernetes").mkdir(parents=True)
    text = (ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    broken = text.replace("terminationGracePeriodSeconds:", "terminationGracePeriodSecond:")
    assert broken != text
    (tmp_path / "deploy" / "kubernetes" / "deployment.yaml").write_text(broken)
    result = _validate(recipes.KUBERNETES_VALIDATE, tmp_path)
    assert result.returncode == 1
    assert "terminationGracePeriodSecond" in result.stdout + result.stderr


def test_the_pods_are_probed_locked_down_and_outwait_tucos_grace() -> None:
    """Both workloads: readiness /readyz, liveness /healthz, a grace above tuco's, non-root, read-only, no caps."""
    documents = _documents()
    for kind, name in (("Deployment", "tuco"), ("StatefulSet", "tuco-single")):
        pod = documents[(kind, name)]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {item["name"]: item for item in container["env"]}
        grace = float(env["TUCO_SHUTDOWN_GRACE_SECONDS"]["value"])
        pre_stop = float(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [0, 0])[1])
        assert pod["terminationGracePeriodSeconds"] > grace + pre_stop
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert "memory" in container["resources"]["limits"]
        security = pod["securityContext"]
        assert (security["runAsNonRoot"], security["runAsUser"], security["runAsGroup"]) == (True, 10001, 10001)
        assert security["fsGroup"] == 10001  # the secrets (0440) and the volume are readable by tuco's group only
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert env["TUCO_AUTH"]["value"] == "token"
        token_dir = env["TUCO_BOOTSTRAP_TOKEN_FILE"]["value"].rpartition("/")[0]
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert "secretName" in volumes[mounts[token_dir]]["secret"]
        for name in ("TUCO_TLS_CERT_FILE", "TUCO_TLS_KEY_FILE"):  # TLS to the pods is the recipe, not an option
            directory = env[name]["value"].rpartition("/")[0]
            assert volumes[mounts[directory]]["secret"]["defaultMode"] == 0o440


def test_no_secret_reaches_an_environment_variable() -> None:
    """Every secret is a mounted file: no env entry takes a value from a Secret, none names a URL with a password."""
    for (kind, name), document in _documents().items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        (container,) = document["spec"]["template"]["spec"]["containers"]
        assert all("valueFrom" not in item for item in container["env"]), (kind, name)
        assert "envFrom" not in container
        assert all("://" not in str(item.get("value", "")) for item in container["env"])


def test_each_workload_has_a_network_policy_admitting_only_labelled_clients_on_the_tuco_port() -> None:
    """In: the container's port, from pods labelled tuco-client only; out: DNS, and PostgreSQL for the replicas."""
    documents = _documents()
    for kind, name, egress_ports in (
        ("Deployment", "tuco", [[53, 53], [5432]]),
        ("StatefulSet", "tuco-single", [[53, 53]]),
    ):
        workload = documents[(kind, name)]["spec"]
        policy = documents[("NetworkPolicy", name)]["spec"]
        assert policy["podSelector"] == workload["selector"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        (container,) = workload["template"]["spec"]["containers"]
        (port,) = container["ports"]
        (rule,) = policy["ingress"]
        assert rule["from"] == [{"podSelector": {"matchLabels": {"tuco-client": "true"}}}]
        assert rule["ports"] == [{"port": port["containerPort"], "protocol": "TCP"}]
        assert [[p["port"] for p in allowed["ports"]] for allowed in policy["egress"]] == egress_ports
        assert all("to" not in allowed or allowed["to"] for allowed in policy["egress"])


def test_the_image_is_pinned_by_digest() -> None:
    """Both workloads name the image by an immutable sha256 digest, never by a tag."""
    documents = _documents()
    for kind, name in (("Deployment", "tuco"), ("StatefulSet", "tuco-single")):
        (container,) = documents[(kind, name)]["spec"]["template"]["spec"]["containers"]
        assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}", container["image"]), container["image"]


def test_replicas_take_the_database_url_from_a_secret_and_a_budget_keeps_two() -> None:
    """The Deployment's database URL is a file from the Secret, its PDB allows one pod down, the StatefulSet claims a
    volume."""
    documents = _documents()
    deployment = documents[("Deployment", "tuco")]["spec"]
    pod = deployment["template"]["spec"]
    env = {item["name"]: item for item in pod["containers"][0]["env"]}
    assert env["TUCO_LOG_BACKEND"]["value"] == "postgres"
    assert "TUCO_DATABASE_URL" not in env
    directory, _, file = env["TUCO_DATABASE_URL_FILE"]["value"].rpartition("/")
    mounts = {mount["mountPath"]: mount["name"] for mount in pod["containers"][0]["volumeMounts"]}
    secret = {volume["name"]: volume for volume in pod["volumes"]}[mounts[directory]]["secret"]
    assert secret["secretName"] == "tuco" and {"key": "database-url", "path": file} in secret["items"]
    assert deployment["replicas"] == 3
    budget = documents[("PodDisruptionBudget", "tuco")]["spec"]
    assert (budget["maxUnavailable"], budget["selector"]) == (1, deployment["selector"])
    assert documents[("Service", "tuco")]["spec"]["selector"] == deployment["selector"]["matchLabels"]
    single = documents[("StatefulSet", "tuco-single")]["spec"]
    assert single["replicas"] == 1
    (claim,) = single["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in single["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
