"""The dashboards: structure against Grafana's JSON model, every query parsed by promtool, every
metric one the exporters, the remediator or the recording rules really produce, and every panel
that should have data given data by a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from alerts import generate
from dashboards import build
from dashboards.model import PANEL_TYPES

JSON = sorted(Path("dashboards/json").glob("*.json"))
DASHES = {p.stem: json.loads(p.read_text()) for p in JSON}
SUBST = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$node": ".*", "$gpu": ".*",
         "$namespace": ".*", "$service": ".*"}


def panels(d: dict) -> list[dict]:
    return [p for p in d["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str, str]]:
    return [(name, p["title"], t["expr"]) for name, d in DASHES.items() for p in panels(d) for t in p["targets"]]


def substitute(expr: str) -> str:
    for k, v in sorted(SUBST.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(k, v)
    return expr


def test_committed_json_is_fresh_and_make_dashboards_is_idempotent():
    r = subprocess.run([sys.executable, "-m", "dashboards.build", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert set(DASHES) == set(build.DASHBOARDS)


@pytest.mark.parametrize("name", sorted(DASHES))
def test_structure_follows_the_current_json_model(name):
    d = DASHES[name]
    assert d["schemaVersion"] >= 39 and d["id"] is None
    assert 8 <= len(d["uid"]) <= 40 and not any(k.startswith("__") for k in d)
    assert "annotations" in d and d["templating"]["list"][0] == {**d["templating"]["list"][0], "name": "datasource",
                                                                 "type": "datasource", "query": "prometheus"}
    declared = {v["name"] for v in d["templating"]["list"]}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = {link["title"] for link in d["links"]}
    assert {"Vigil dashboards", "Runbooks"} <= titles
    for p in panels(d):
        assert p["type"] in PANEL_TYPES and p["type"] not in ("graph", "singlestat"), p["type"]
        assert p["description"] and p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 and p["gridPos"]["h"] > 0
        assert p["fieldConfig"]["defaults"]["unit"]
        assert p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert p["targets"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"} and t["expr"]
            for fn in re.findall(r"\b(rate|irate)\(([^\[]*)\[([^\]]+)\]", t["expr"]):
                assert fn[2] == "$__rate_interval", (p["title"], t["expr"])
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval", "__interval", "__range"}
            assert used <= declared, (p["title"], used - declared)


def test_uids_are_unique_and_stable():
    uids = [d["uid"] for d in DASHES.values()]
    assert len(uids) == len(set(uids))
    assert sorted(uids) == ["vigil-gpu-fleet", "vigil-gpu-node", "vigil-remediation", "vigil-service"]


def test_export_variant_is_for_the_import_dialog_only():
    for name in DASHES:
        exp = json.loads(Path(f"dashboards/export/{name}.json").read_text())
        assert exp["__inputs"][0]["name"] == "DS_PROMETHEUS"
        assert "${datasource}" not in json.dumps(exp)


def test_provisioning_loads_the_dashboards_from_json():
    prov = yaml.safe_load(Path("dashboards/provisioning/dashboards/vigil.yaml").read_text())
    [provider] = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards/vigil"
    ds = yaml.safe_load(Path("dashboards/provisioning/datasources/prometheus.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus" and ds["datasources"][0]["uid"]


def test_every_query_parses_with_promtool(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}:check", "expr": substitute(expr)}
        for i, (_, _, expr) in enumerate(queries())]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    r = subprocess.run([promtool, "check", "rules", "--lint=none", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0) in KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def known_metrics() -> set[str]:
    from exporters.gpu.metrics import SPECS
    from exporters.service.collector import ServiceMetrics
    from remediator.runtime.metrics import Metrics

    names = set(SPECS)
    for registry in (ServiceMetrics().registry, Metrics(lambda: {}).registry):
        for fam in registry.collect():
            names.add(fam.name)
            names.update(s.name for s in fam.samples)
            if fam.type == "histogram":
                names.update(f"{fam.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
            if fam.type == "counter":
                names.add(f"{fam.name}_total")
    names |= {"probe_success", "probe_duration_seconds", "probe_http_status_code", "service_endpoint_ready",
              "service_exporter_targets"}  # the service exporter's per-endpoint collector
    for f in generate.rule_files().values():
        names |= {r["record"] for g in f["groups"] for r in g["rules"] if "record" in r}
    return names | {"up", "ALERTS"}


def test_every_metric_a_panel_uses_exists():
    known = known_metrics()
    for dashboard, title, expr in queries():
        unknown = metric_names(expr) - known
        assert not unknown, f"{dashboard} / {title}: {sorted(unknown)} is produced by nothing (renamed?)"


def test_the_metric_check_can_fail():
    assert metric_names('sum by (node) (rate(gpu_utilisation_ratio{job="x"}[5m]))') == {"gpu_utilisation_ratio"}
    assert "gpu_utilisation_ratio" not in known_metrics()


@pytest.mark.integration
def test_every_panel_that_should_have_data_has_data(tmp_path):
    """A real Prometheus with Vigil's rules scrapes a simulated GPU exporter, the service exporter
    probing a local inference server, and the remediator (dry-run) after an alert."""
    from exporters.gpu.exporter import PodResourcesConfig
    from exporters.gpu.kernel_log import KernelLogConfig
    from exporters.gpu.server import make_app as gpu_app
    from exporters.gpu.simulated import SimulatedNVML
    from exporters.gpu.simulated_kmsg import SimulatedKernelLog
    from exporters.http import serve
    from exporters.service.config import parse_config
    from exporters.service.exporter import build as build_service
    from exporters.service.server import make_app as service_app
    from tests.gpu.conftest import make_exporter
    from tests.gpu.kubelet import FakeKubelet, pod
    from tests.k8s.controlplane import free_port
    from tests.remediator.payloads import alert, body, xid_labels
    from tests.service.servers import Endpoint
    from tests.stack import Stack

    kubelet = FakeKubelet(tmp_path / "kubelet.sock")  # pod attribution, for "Pods on each GPU"
    kubelet.set_pods(pod("ml", "llm-0", {"server": [("nvidia.com/gpu", ["GPU-5a1e0000-0000-4000-8000-000000000000"])]}))
    sim = SimulatedNVML(8, kernel_log=SimulatedKernelLog(tmp_path / "kmsg"),
                        fabric=("7f0c3a52-5d3e-4c1b-9a0e-1f2e3d4c5b6a", 1))  # an NVLink domain, for its panels
    gpu = make_exporter(sim, nvlink_interval=1, kernel_log=KernelLogConfig(str(tmp_path / "kmsg"), poll=0.1),
                        pod_resources=PodResourcesConfig(str(kubelet.socket), interval=1))
    gpu_http = serve(gpu_app(gpu), "127.0.0.1", 0)
    endpoint = Endpoint()
    svc = build_service(parse_config({"interval": "1s", "modules": {
        "completion": {"prober": "inference", "timeout": "3s", "inference": {"model": "m"}},
        "broken": {"prober": "http", "timeout": "1s", "http": {"path": "/err"}}},
        "targets": [*({"name": f"llm-{z}", "url": endpoint.url, "module": "completion",
                       "labels": {"namespace": "ml", "service": "llm", "zone": z}} for z in ("zone-a", "zone-b")),
                    {"name": "llm-bad", "url": endpoint.url, "module": "broken",
                     "labels": {"namespace": "ml", "service": "llm", "zone": "zone-a"}}]}))
    svc.start()
    svc_http = serve(service_app(svc), "127.0.0.1", 0)
    port = free_port()
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({"ledger": {"path": str(tmp_path / "l.db")}, "safety": {"dry_run": True},
                                   "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                                                         "actions": [{"type": "cordon_node",
                                                                      "params": {"node": "{{ labels.node }}"}}]}]}}))
    rem = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--listen",
                            f"127.0.0.1:{port}", "--insecure-no-auth"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    stack = Stack(tmp_path)
    try:
        for _ in range(200):
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        sim.inject(2, "ecc_uncorrected")
        stack.start_prometheus([
            {"job_name": "vigil-gpu-exporter", "static_configs": [
                {"targets": [f"127.0.0.1:{gpu_http.server_port}"], "labels": {"node": "gpu-node-0"}}]},
            {"job_name": "vigil-service-exporter", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{svc_http.server_port}"]}]},
            {"job_name": "vigil-remediator", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
        ])
        for job in ("vigil-gpu-exporter", "vigil-service-exporter", "vigil-remediator"):
            stack.wait_targets_up(job)  # Prometheus applies new targets every 5 s
        time.sleep(2)
        payload = body(alert(xid_labels("gpu-node-0")))  # after the first scrapes: increase() sees it
        for _ in range(3):
            requests.post(f"http://127.0.0.1:{port}/webhook/alertmanager", json=payload, timeout=10)
        sim.inject(2, "ecc_uncorrected")  # an increase inside the rate window
        time.sleep(3)
        # the SLO recording rules evaluate every 30 s, each group at its own offset
        deadline = time.monotonic() + 90
        recorded = [f"namespace_service_zone:{sli}:ratio_rate{w}" for sli in ("probe_errors", "probe_slow",
                                                                              "ttft_slow") for w in ("5m", "1h", "3d")]
        while time.monotonic() < deadline and not all(stack.query(r) for r in recorded):
            time.sleep(1)
        missing = []
        for d in (build.DASHBOARDS[n]() for n in build.DASHBOARDS):
            for p in d.panels():
                if not p.expect_data:
                    continue
                # as Grafana asks: an instant query for stats, a range for time series
                if not any((stack.query if t.instant else stack.query_range)(substitute(t.expr)) for t in p.targets):
                    missing.append(f"{d.title} / {p.title}")
        assert not missing, f"panels without data: {missing}"
    finally:
        stack.stop()
        rem.terminate()
        rem.wait(10)
        svc.stop()
        svc_http.shutdown()
        gpu_http.shutdown()
        gpu.stop()
        kubelet.stop()
        endpoint.close()
