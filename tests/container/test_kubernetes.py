"""deploy/kubernetes/ validates against the Kubernetes schemas (offline, kubernetes-validate --strict) and says
what the issue asks of it: probes, a grace above tuco's, resources, a locked-down non-root container, Secret refs."""

from __future__ import annotations

import os
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
    assert len(passed) == len(_documents()) == 5


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
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert "memory" in container["resources"]["limits"]
        assert (pod["securityContext"]["runAsNonRoot"], pod["securityContext"]["runAsUser"]) == (True, 10001)
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


def test_replicas_take_the_database_url_from_a_secret_and_a_budget_keeps_two() -> None:
    """The Deployment's database URL is a secretKeyRef, its PDB allows one pod down, the StatefulSet claims a volume."""
    documents = _documents()
    deployment = documents[("Deployment", "tuco")]["spec"]
    env = {item["name"]: item for item in deployment["template"]["spec"]["containers"][0]["env"]}
    assert env["TUCO_LOG_BACKEND"]["value"] == "postgres"
    assert env["TUCO_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "tuco", "key": "database-url"}}
    assert deployment["replicas"] == 3
    budget = documents[("PodDisruptionBudget", "tuco")]["spec"]
    assert (budget["maxUnavailable"], budget["selector"]) == (1, deployment["selector"])
    assert documents[("Service", "tuco")]["spec"]["selector"] == deployment["selector"]["matchLabels"]
    single = documents[("StatefulSet", "tuco-single")]["spec"]
    assert single["replicas"] == 1
    (claim,) = single["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in single["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
