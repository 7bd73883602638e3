"""The observability kit: the alert rules pass promtool and fire on their conditions, a live scrape passes
``promtool check metrics``, and every dashboard and rule expression reads a family a real server exports."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.process import TucoProcess
from tests.e2e.test_failing_disk import tiny_disk  # noqa: F401  # the fixture, a real 64 KiB tmpfs
from tests.needs import command

StartTuco = Callable[..., TucoProcess]
ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy" / "observability"
_HOW = "apt-get install prometheus (Debian's package carries promtool; scripts/test installs it)"
_NAME = re.compile(r"\b((?:tuco|process)_[a-z_]+)\b")


def _promtool(*args: str, stdin: str | None = None, cwd: Path = KIT) -> subprocess.CompletedProcess[str]:
    promtool = command("promtool", _HOW)
    return subprocess.run([promtool, *args], input=stdin, cwd=cwd, capture_output=True, text=True, timeout=120)


def _rules() -> dict[str, str]:
    """Each alert's name and expression, from alerts.yaml."""
    groups = yaml.safe_load((KIT / "alerts.yaml").read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def _exported(client: httpx.Client) -> set[str]:
    """The sample names a live /metrics has (a histogram's _bucket, _sum and _count each)."""
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    return {line.split("{")[0].split(" ")[0] for line in scraped.text.splitlines() if line and line[0] != "#"}


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    """promtool check rules: the five alerts parse and their expressions are valid PromQL."""
    checked = _promtool("check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    assert set(_rules()) == {
        "TucoLogFailed",
        "TucoFsyncSlow",
        "TucoReplicationLag",
        "TucoNotReady",
        "TucoSlowConsumersCut",
    }


def test_each_alert_fires_on_recorded_series_of_its_condition_and_not_on_healthy_ones() -> None:
    """promtool test rules alerts-test.yaml: every alert has a case where it fires and one where it stays quiet."""
    tested = _promtool("test", "rules", "alerts-test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load((KIT / "alerts-test.yaml").read_text())["tests"]
    fired = {case["alertname"] for test in cases for case in test["alert_rule_test"] if case.get("exp_alerts")}
    quiet = {case["alertname"] for test in cases for case in test["alert_rule_test"] if not case.get("exp_alerts")}
    assert fired == quiet == set(_rules())


def test_a_broken_rules_test_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: a threshold raised past the recorded lag makes TucoReplicationLag not fire."""
    (tmp_path / "alerts.yaml").write_text((KIT / "alerts.yaml").read_text().replace("> 10", "> 100"))
    (tmp_path / "alerts-test.yaml").write_text((KIT / "alerts-test.yaml").read_text())
    tested = _promtool("test", "rules", "alerts-test.yaml", cwd=tmp_path)
    assert tested.returncode == 1
    assert "alertname: TucoReplicationLag" in tested.stdout + tested.stderr


def test_a_live_scrape_passes_promtool_check_metrics(tuco: StartTuco) -> None:
    """A server that answered keys, a watch and a 404 exports metrics promtool finds no problem in."""
    server = tuco()
    with server.client() as client:
        assert client.put("/v1/key/app/config", content=b"v").status_code == 201
        assert client.get("/v1/key/app%2Fconfig").status_code == 200
        assert client.get("/v1/nope/x").status_code == 404
        assert client.head("/v1/watch").status_code == 200
        scraped = client.get("/metrics").text
    checked = _promtool("check", "metrics", stdin=scraped)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((KIT / "grafana-dashboard.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


_PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "text", "heatmap", "state-timeline"}


def _dashboard_lint(dashboard: dict[str, object]) -> list[str]:
    """What is wrong with a Grafana dashboard's structure: unknown panel types, undeclared variables, panels off
    the 24-column grid or overlapping another."""
    problems: list[str] = []
    declared = {"__rate_interval", "__interval", "__range"} | {
        variable["name"]
        for variable in dashboard["templating"]["list"]  # type: ignore[index]
    }
    taken: list[tuple[int, int, int, int, str]] = []
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        title = panel.get("title", "?")
        if panel["type"] not in _PANEL_TYPES:
            problems.append(f"{title}: unknown panel type {panel['type']!r}")
        grid = panel["gridPos"]
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        if x < 0 or w < 1 or h < 1 or x + w > 24:
            problems.append(f"{title}: off the 24-column grid at {grid}")
        for ox, oy, ow, oh, other in taken:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"{title}: overlaps {other}")
        taken.append((x, y, w, h, title))
        used = re.findall(r"\$\{?(\w+)", json.dumps(panel))
        problems += [f"{title}: ${name} is not a dashboard variable" for name in used if name not in declared]
    return problems


def test_the_dashboard_lints_clean_and_its_promql_parses(tmp_path: Path) -> None:
    """The dashboard's structure (panel types, variables, a grid without overlaps) lints clean, and each of its
    expressions, its variables filled in, parses as PromQL (promtool check rules on recording rules of them)."""
    dashboard = json.loads((KIT / "grafana-dashboard.json").read_text())
    assert _dashboard_lint(dashboard) == []
    filled = {"$__rate_interval": "1m", "$instance": "tuco:1", "$job": "tuco"}
    expressions = _dashboard_expressions()
    rules = []
    for number, expression in enumerate(expressions):
        for variable, value in filled.items():
            expression = expression.replace(variable, value)
        rules.append({"record": f"dashboard:panel_{number}", "expr": expression})
    (tmp_path / "dashboard-rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = _promtool("check", "rules", "dashboard-rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout


def test_the_dashboard_lint_and_promtool_catch_a_broken_dashboard(tmp_path: Path) -> None:
    """The lint can fail: an overlapping panel, an unknown type and an undeclared variable are each named; a
    broken expression fails promtool."""
    dashboard = json.loads((KIT / "grafana-dashboard.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    first, second = panels[0], panels[1]
    second["gridPos"] = dict(first["gridPos"])
    second["type"] = "graph-old"
    first["targets"][0]["expr"] = first["targets"][0]["expr"].replace("$job", "$nojob")
    assert _dashboard_lint(dashboard) == [
        f"{first['title']}: $nojob is not a dashboard variable",
        f"{second['title']}: unknown panel type 'graph-old'",
        f"{second['title']}: overlaps {first['title']}",
    ]
    broken = {"groups": [{"name": "d", "rules": [{"record": "d:x", "expr": "rate(tuco_http_requests_total[1m]"}]}]}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    assert _promtool("check", "rules", "broken.yaml", cwd=tmp_path).returncode == 1


@pytest.mark.postgres
def test_every_dashboard_and_rule_expression_reads_a_family_a_real_server_exports(tuco: StartTuco, pg_dsn: str) -> None:
    """The names in the dashboard's and the rules' PromQL are all in a live scrape of a full replica or of a
    read-through one (the cache families); the dashboard's request, log, replication, watch, cache rows are there."""
    full = tuco(TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn, TUCO_DATA_DIR="/nonexistent/full")
    cache = tuco(
        TUCO_LOG_BACKEND="postgres", TUCO_DATABASE_URL=pg_dsn, TUCO_DATA_DIR="/nonexistent/cache", TUCO_STATE="cache"
    )
    with full.client() as client:
        assert client.put("/v1/key/a", content=b"v").status_code == 201
        exported = _exported(client)
    with cache.client() as client:
        assert client.get("/v1/key/a").status_code == 200
        exported |= _exported(client)
    filed = tuco()  # the file log's fdatasync histogram: a file-log server exports it
    with socket.create_connection(("127.0.0.1", filed.port), timeout=10) as sock:  # a refusal's counter appears
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert b" 400 " in sock.recv(65536)
    with filed.client() as client:
        assert client.put("/v1/key/a", content=b"v").status_code == 201
        exported |= _exported(client)
    expressions = _dashboard_expressions() + list(_rules().values())
    used = {name for expr in expressions for name in _NAME.findall(expr)}
    assert used - exported == set()
    for family in ("tuco_http_requests_total", "tuco_log_sync_duration_seconds_bucket", "tuco_replication_lag_seconds"):
        assert family in used
    for family in ("tuco_watchers_cut_off_total", "tuco_cache_hits_total", "tuco_log_failed"):
        assert family in used


def _firing(alert: str) -> dict[str, object]:
    """The alert as promtool should find it firing for the recorded instance, its annotations rendered."""
    groups = yaml.safe_load((KIT / "alerts.yaml").read_text())["groups"]
    rule = next(rule for group in groups for rule in group["rules"] if rule.get("alert") == alert)
    annotations = {k: v.replace("{{ $labels.instance }}", "tuco:1") for k, v in rule["annotations"].items()}
    return {"exp_labels": {"instance": "tuco:1", "job": "tuco", **rule["labels"]}, "exp_annotations": annotations}


def _series(name: str, values: list[float]) -> dict[str, str]:
    return {"series": f'{name}{{instance="tuco:1", job="tuco"}}', "values": " ".join(f"{v:g}" for v in values)}


def test_log_failed_and_not_ready_fire_on_the_scrapes_of_a_server_whose_disk_filled(
    tuco: StartTuco,
    tiny_disk: Path,  # noqa: F811  # the fixture imported above
    tmp_path: Path,
) -> None:
    """Scrape a healthy server, fill its disk until a write is 503 log_failed, scrape again: the recorded samples,
    as a minute apart series, make promtool fire TucoLogFailed at once and TucoNotReady after its 2 minutes."""
    server = tuco(data_dir=tiny_disk)
    scrapes: list[dict[str, float]] = []

    def scrape(client: httpx.Client) -> None:
        text = client.get("/metrics").text
        values = {}
        for name in ("tuco_log_failed", "tuco_ready"):
            found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
            assert found is not None, name
            values[name] = float(found.group(1))
        scrapes.append(values)

    with server.client() as client:
        scrape(client)
        for number in range(100):
            if client.put(f"/v1/key/k{number}", content=os.urandom(4096)).status_code != 201:
                break
        else:
            pytest.fail("a 64 KiB disk took 400 KiB of values")
        scrape(client)
    assert scrapes == [{"tuco_log_failed": 0.0, "tuco_ready": 1.0}, {"tuco_log_failed": 1.0, "tuco_ready": 0.0}]
    healthy, failed = scrapes
    series = [
        _series(name, [healthy[name]] + [failed[name]] * 5) for name in ("tuco_log_failed", "tuco_ready")
    ]  # one scrape a minute: healthy, then failed for five minutes (the failed state does not clear by itself)
    test = {
        "rule_files": [str(KIT / "alerts.yaml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "0m", "alertname": "TucoLogFailed", "exp_alerts": []},
                    {"eval_time": "1m", "alertname": "TucoLogFailed", "exp_alerts": [_firing("TucoLogFailed")]},
                    {"eval_time": "2m", "alertname": "TucoNotReady", "exp_alerts": []},
                    {"eval_time": "4m", "alertname": "TucoNotReady", "exp_alerts": [_firing("TucoNotReady")]},
                ],
            }
        ],
    }
    (tmp_path / "live-test.yaml").write_text(yaml.safe_dump(test))
    tested = _promtool("test", "rules", "live-test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_service_monitor_scrapes_the_manifests_service_by_its_labels_and_port() -> None:
    """The ServiceMonitor selects the tuco Service's labels, scrapes its named port at /metrics over HTTPS, with a
    bearer token from a Secret (the metrics-only token its comment makes)."""
    manifests = ROOT / "deploy" / "kubernetes"
    service = next(
        document
        for document in yaml.safe_load_all((manifests / "deployment.yaml").read_text())
        if document["kind"] == "Service"
    )
    monitor_text = (manifests / "monitoring" / "servicemonitor.yaml").read_text()
    monitor = yaml.safe_load(monitor_text)
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "https")
    assert endpoint["authorization"]["type"] == "Bearer"
    assert "--grant =metrics" in monitor_text
