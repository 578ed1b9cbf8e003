"""The rules and routing, checked with the real promtool and amtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts import generate, testcases

RULES = sorted(Path("alerts/rules").glob("*.yml"))
AM = Path("alerts/alertmanager.yml")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: `make test` installs the Debian packages prometheus and prometheus-alertmanager"
    return path


def all_rules():
    for f in RULES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                yield f, g, r


def test_generated_files_are_fresh():
    r = subprocess.run(["python", "-m", "alerts.generate", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_promtool_check_rules_has_no_findings():
    r = subprocess.run([tool("promtool"), "check", "rules", "--lint=all", "--lint-fatal", *map(str, RULES)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in (r.stdout + r.stderr).upper()


def test_promtool_unit_tests_pass():
    tests = sorted(Path("alerts/tests").glob("*_test.yml"))
    assert tests
    r = subprocess.run([tool("promtool"), "test", "rules", *[t.name for t in tests]], cwd="alerts/tests",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_is_tested_firing_and_not_firing():
    names = {r["alert"] for _, _, r in all_rules() if "alert" in r}
    cases = [c for cs in testcases.cases().values() for c in cs]
    firing = {c.alert for c in cases if c.expect}
    quiet = {c.alert for c in cases if not c.expect}
    assert names - firing == set(), "alerts without a firing test"
    assert names - quiet - {"Watchdog"} == set(), "alerts without a not-firing test"


@pytest.mark.parametrize(("path", "group", "rule"), [(f, g["name"], r) for f, g, r in all_rules() if "alert" in r],
                         ids=lambda v: v.get("alert", "") if isinstance(v, dict) else str(v))
def test_alert_conventions(path, group, rule):
    """mixtool's lint, in pytest: names, severity, annotations, runbook."""
    name = rule["alert"]
    assert re.fullmatch(r"([A-Z]+[a-z0-9]+)+", name) and len(name) <= 40, name
    assert len(group) <= 40
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    ann = rule["annotations"]
    assert re.fullmatch(r"[A-Z].+\.", ann["summary"]) and "{{" not in ann["summary"]
    assert "{{" in ann["description"]
    assert ann["runbook_url"] == generate.Settings().runbook_url.format(alertname=name)
    runbook = Path("docs/runbooks") / f"{name}.md"
    text = runbook.read_text()
    for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation", "## What Vigil does automatically"):
        assert section in text, (runbook, section)


def test_groups_stay_small_and_recording_rules_follow_the_naming():
    for f in RULES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            assert len(g["rules"]) <= 20, g["name"]
            for r in g["rules"]:
                if "record" in r:
                    assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", r["record"]), r["record"]
                    assert g["name"].endswith(".rules")


@pytest.mark.parametrize(("alert", "labels"), [
    ("GpuXidCritical", {"node", "gpu", "uuid", "xid"}),
    ("GpuLost", {"node", "gpu", "uuid"}),
    ("GpuEccUncorrectable", {"node", "gpu", "uuid"}),
    ("GpuRowRemapFailure", {"node", "gpu", "uuid"}),
    ("GpuRecoveryActionRequired", {"node", "gpu", "uuid", "recovery_action"}),
    ("GpuNvswitchSxidFatal", {"node", "device", "sxid"}),
    ("InferenceEndpointDown", {"namespace", "service", "pod"}),
    ("InferenceLatencyBudgetBurn", {"namespace", "service", "zone"}),
])
def test_remediable_alerts_carry_the_labels_the_remediator_needs(alert, labels):
    cases = [c for cs in testcases.cases().values() for c in cs if c.alert == alert and c.expect]
    assert cases
    for c in cases:
        for exp_labels, _ in c.expect:
            if exp_labels["severity"] == "critical":
                assert labels <= set(exp_labels) and exp_labels.get("remediation") == "auto"


def test_prometheus_rule_never_drifts_from_the_rule_files():
    pr = yaml.safe_load(Path("deploy/prometheus-operator/prometheusrule.yaml").read_text())
    assert pr["kind"] == "PrometheusRule" and pr["apiVersion"] == "monitoring.coreos.com/v1"
    groups = [g for f in RULES for g in yaml.safe_load(f.read_text())["groups"]]
    assert sorted(pr["spec"]["groups"], key=lambda g: g["name"]) == sorted(groups, key=lambda g: g["name"])


def test_amtool_check_config():
    r = subprocess.run([tool("amtool"), "check-config", str(AM)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


REMEDIABLE = sorted({r["alert"] for _, _, r in all_rules() if r.get("labels", {}).get("remediation") == "auto"})


def test_every_critical_gpu_alert_is_remediable():
    """Each is routed to the remediator below (amtool), and the example policy has a rule for each
    (tests/remediator/test_repair_rules.py)."""
    critical = {r["alert"] for _, g, r in all_rules() if g["name"] == "vigil-gpu-health"
                and r["labels"]["severity"] == "critical"}
    assert critical >= {"GpuXidCritical", "GpuLost", "GpuNvswitchSxidFatal", "GpuRecoveryActionRequired"}
    assert critical <= set(REMEDIABLE)


@pytest.mark.parametrize("alert", REMEDIABLE)
def test_remediable_alerts_route_to_the_remediator(alert):
    labels = {r["alert"]: r["labels"] for _, _, r in all_rules() if r.get("alert") == alert and
              r["labels"].get("remediation") == "auto"}[alert]
    args = [f"{k}={v}" for k, v in {"alertname": alert, **labels, "node": "n1", "gpu": "3"}.items()]
    r = subprocess.run([tool("amtool"), "config", "routes", "test", f"--config.file={AM}",
                        "--verify.receivers=vigil-remediator,oncall", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("labels", "receivers"), [
    ({"alertname": "GpuThermalSlowdown", "severity": "warning", "node": "n1"}, "tickets"),
    ({"alertname": "GpuEccUncorrectable", "severity": "critical", "node": "n1"}, "oncall"),
    ({"alertname": "Watchdog", "severity": "info"}, "deadmans-switch"),
])
def test_other_alerts_do_not_reach_the_remediator(labels, receivers):
    r = subprocess.run([tool("amtool"), "config", "routes", "test", f"--config.file={AM}",
                        f"--verify.receivers={receivers}", *[f"{k}={v}" for k, v in labels.items()]],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prometheus_configs():
    r = subprocess.run([tool("promtool"), "check", "config", "--syntax-only", "alerts/prometheus.yml"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # Debian's Prometheus 2.42 is built without Kubernetes service discovery, so promtool cannot
    # check this file here; hold its shape instead: the pod's node becomes the `node` label.
    k8s = yaml.safe_load(Path("alerts/prometheus-kubernetes.yml").read_text())
    gpu = next(j for j in k8s["scrape_configs"] if j["job_name"] == "vigil-gpu-exporter")
    assert {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"} in gpu["relabel_configs"]
