"""SIGTERM during a drain that a PodDisruptionBudget blocks: readiness drops, intake still records,
the process exits well inside Kubernetes' 30 s grace period with the drain left resumable, and after
the restart the drain resumes and completes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client

from remediator.store.ledger import SQLiteLedger
from tests.k8s.controlplane import add_gpu_nodes, free_port, wait_until

from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s
TOKEN = "shutdown-token-0123456789"


class Remediator:
    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg, self.log, self.port = cfg, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        out = self.log.open("a")
        self.proc = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(self.cfg),
                                      "--listen", f"127.0.0.1:{self.port}"], stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "VIGIL_SHUTDOWN_TOKEN": TOKEN})
        out.close()
        wait_until(lambda: self._up() or self.proc.poll() is not None, 30, what="remediator up")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def _up(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def post(self, payload: dict) -> requests.Response:
        return requests.post(f"{self.url}/webhook/alertmanager", json=payload,
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _deploy_blocked(api, ns: str, pool: str) -> None:
    labels = {"app": "llm"}
    client.AppsV1Api(api).create_namespaced_deployment(ns, {
        "metadata": {"name": "llm"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "example.invalid/llm:1"}],
                     "terminationGracePeriodSeconds": 0, "nodeSelector": {"vigil.io/pool": pool},
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                    "whenUnsatisfiable": "DoNotSchedule",
                                                    "labelSelector": {"matchLabels": labels}}]}}}})
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(ns, {
        "metadata": {"name": "llm"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": labels}}})
    core = client.CoreV1Api(api)

    def running():
        pods = core.list_namespaced_pod(ns, label_selector="app=llm").items
        return len([p for p in pods if p.status.phase == "Running"]) == 2
    wait_until(running, 90, what="2 running pods")
    pdb = client.PolicyV1Api(api)
    wait_until(lambda: pdb.read_namespaced_pod_disruption_budget("llm", ns).status.current_healthy == 2, 60,
               what="the PDB sees 2 healthy pods")


def test_sigterm_during_a_blocked_drain_then_resume_once(k8s_cluster, tmp_path, unique):
    api = k8s_cluster.api_client()
    core = client.CoreV1Api(api)
    pool = f"term-{unique}"
    nodes = [f"{pool}-n0", f"{pool}-n1"]
    add_gpu_nodes(api, nodes, pool=pool)
    wait_until(lambda: all(any(c.type == "Ready" and c.status == "True" for c in
                               core.read_node(n).status.conditions or []) for n in nodes), 60, what="nodes Ready")
    ns = f"ns-{unique}"
    core.create_namespace({"metadata": {"name": ns}})
    _deploy_blocked(api, ns, pool)
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({
        "auth": {"bearer_token_env": "VIGIL_SHUTDOWN_TOKEN"}, "server": {"shutdown_delay": "3s"},
        "ledger": {"path": str(tmp_path / "ledger.db")},
        "kubernetes": {"kubeconfig": str(k8s_cluster.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "safety": {"budget": {"max_nodes": 1, "min_nodes": 1}},
        "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'], "actions": [
            {"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
            {"type": "drain_node", "params": {"node": "{{ labels.node }}", "timeout": "5m"}}]}]},
    }))
    rem = Remediator(cfg, tmp_path / "remediator.log")
    rem.start()
    try:
        assert rem.post(body(alert(xid_labels(nodes[0])))).status_code == 200

        def drain_running():
            items = rem.get("/api/incidents").json()["items"]
            inc = rem.get(f"/api/incidents/{items[0]['id']}").json() if items else {}
            acts = inc.get("actions", [])
            return inc if len(acts) == 2 and acts[1]["state"] == "running" else None
        inc = wait_until(drain_running, 60, what="the drain running (blocked by the PDB)")
        t0 = time.monotonic()
        rem.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: rem.get("/readyz").status_code == 503, 5, interval=0.05, what="readiness off")
        late = rem.post(body(alert({"alertname": "LateArrival", "node": nodes[1]})))
        assert late.status_code == 200 and late.json()["new"] == 1  # intake still records
        assert rem.proc.wait(10) == 0
        print(f"\nexited {time.monotonic() - t0:.1f} s after SIGTERM")
    finally:
        rem.kill()
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    stopped = ledger.get_incident(inc["id"])
    ledger.close()
    assert [a["state"] for a in stopped["actions"]] == ["succeeded", "running"], stopped["actions"]
    assert stopped["status"] == "acting"
    client.PolicyV1Api(api).delete_namespaced_pod_disruption_budget("llm", ns)
    rem.start()
    try:
        done = wait_until(lambda: (i := rem.get(f"/api/incidents/{inc['id']}").json())["status"] == "succeeded"
                          and i, 120, what="the drain completed after the restart")
    finally:
        rem.proc.send_signal(signal.SIGTERM)
        rem.proc.wait(15)
        rem.kill()
    assert [(a["type"], a["state"]) for a in done["actions"]] == [("cordon_node", "succeeded"),
                                                                    ("drain_node", "succeeded")]
    assert sum(1 for a in done["audit"] if a["event"] == "action:drain_node") == 1  # completed once
    pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={nodes[0]}").items
    assert not [p for p in pods if p.metadata.namespace == ns and not p.metadata.deletion_timestamp]
    events = core.list_namespaced_event("default", field_selector=f"involvedObject.name={nodes[0]}").items
    reasons = Counter(e.reason for e in events)
    assert reasons["VigilCordon"] == 1 and reasons["VigilDrain"] == 1, reasons
    for n in nodes:
        core.delete_node(n)
