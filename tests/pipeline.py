"""The whole pipeline on 127.0.0.1: a local cluster with simulated GPU nodes, one simulated GPU
exporter per node, Prometheus with Vigil's rules, Alertmanager with Vigil's routing, and the
remediator acting on the cluster. Used by the demo and the benchmarks.

Some nodes' exporters push through the fast path, the others are seen only through the pull
path (scrape -> rule -> Alertmanager), so one run measures both side by side."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from kubernetes import client

from alerts import generate
from tests.k8s.__main__ import SAMPLE_NS, SAMPLE_REPLICAS, _sample_workload
from tests.k8s.controlplane import ControlPlane, add_gpu_nodes, free_port, start, wait_until
from tests.service.servers import Endpoint
from tests.stack import Proc, Stack

REPO = Path(__file__).resolve().parents[1]
SCRAPE = "5s"  # as alerts/prometheus.yml's GPU job; the GPU rule group evaluates every 5s


@dataclass
class Timeline:
    node: str
    path: str  # "fast" or "pull"
    injected: float  # wall-clock seconds
    scraped: float | None = None  # Prometheus has the XID
    firing: float | None = None  # the rule's alert fires in Prometheus
    received: float | None = None  # the remediator recorded the incident
    acted: float | None = None  # the node became unschedulable
    drained: float | None = None  # the drain finished (pods moved)
    steps: dict[str, float] = field(default_factory=dict)  # the ladder's later steps: action -> finished

    def hop(self, t: float | None) -> str:
        return f"{t - self.injected:6.2f} s" if t is not None else "   -   "


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Pipeline:
    workdir: Path
    nodes: int = 4
    fast_nodes: int = 2  # the first `fast_nodes` exporters push to Alertmanager
    max_repairs: int = 3  # repeat offenders: repairs per node in 7 days before it is an RMA candidate
    cp: ControlPlane | None = None
    stack: Stack | None = None
    remediator_url: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    exporters: dict[str, str] = field(default_factory=dict)  # node -> exporter URL
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # zone -> a local inference server

    @property
    def node_names(self) -> list[str]:
        return [f"gpu-node-{i}" for i in range(self.nodes)]

    def _spawn(self, name: str, args: list[str], url: str, env: dict | None = None) -> Proc:
        """A component run from the repository, ready once `url` answers."""
        proc = self.stack.spawn(name, args, cwd=REPO, env=env)
        self.stack.wait_http(proc, url)
        return proc

    def start(self) -> Pipeline:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stack = Stack(self.workdir)
        self.cp = start(self.workdir / "k8s", "cluster")
        api = self.cp.api_client()
        add_gpu_nodes(api, self.node_names)
        core = client.CoreV1Api(api)
        wait_until(lambda: all(any(c.type == "Ready" and c.status == "True"
                                   for c in core.read_node(n).status.conditions or []) for n in self.node_names),
                   60, what="nodes Ready")
        _sample_workload(api)
        wait_until(lambda: self._spread(core), 120, what="the sample workload's pods Running, one on each node")
        self._routing(api)
        NodeAgent.prepare(api)
        self._prometheus_port, self._alertmanager_port = free_port(), free_port()
        self._start_remediator()
        self.stack.start_alertmanager(f"{self.remediator_url}/webhook/alertmanager", self.token,
                                      port=self._alertmanager_port)
        for i, node in enumerate(self.node_names):
            port = free_port()
            args = [sys.executable, "-m", "exporters.gpu.cli", "--backend", "simulated", "--simulated-gpus", "8",
                    "--listen", f"127.0.0.1:{port}", "--node-name", node]
            if i < self.fast_nodes:
                args += ["--alertmanager-url", self.stack.alertmanager_url, "--alert-resend", "5s"]
            self.exporters[node] = f"http://127.0.0.1:{port}"
            self._spawn(f"gpu-exporter-{node}", args, f"{self.exporters[node]}/healthz")
        service_url = self._start_service_exporter()
        self.stack.start_prometheus([
            {"job_name": "vigil-service-exporter", "honor_labels": True,
             "static_configs": [{"targets": [service_url.removeprefix("http://")]}]},
            {"job_name": "vigil-gpu-exporter", "static_configs": [
                {"targets": [u.removeprefix("http://")], "labels": {"node": n}} for n, u in self.exporters.items()]},
            {"job_name": "vigil-remediator", "static_configs": [{"targets": [self.remediator_url.removeprefix("http://")]}]},
        ], scrape_interval=SCRAPE, port=self._prometheus_port)
        self.stack.wait_targets_up("vigil-gpu-exporter", self.nodes)
        self.agent = NodeAgent(api, self.exporters)
        return self

    def _spread(self, core) -> bool:
        """True once every node (up to the replica count) runs a pod of the sample workload: the drains
        later must find pods to move. Its spread constraint is soft, so a node that was not schedulable
        yet when the pods were placed can stay empty; then one pod of the most crowded node is deleted
        and its replacement lands on the empty node (the spread score prefers it)."""
        pods = [p for p in core.list_namespaced_pod(SAMPLE_NS, label_selector="app=llm").items
                if p.status.phase == "Running" and p.spec.node_name and not p.metadata.deletion_timestamp]
        if len(pods) < SAMPLE_REPLICAS:
            return False
        on = Counter(p.spec.node_name for p in pods)
        if all(on[n] for n in self.node_names[:SAMPLE_REPLICAS]):
            return True
        crowded = max(on, key=on.__getitem__)
        victim = next(p for p in pods if p.spec.node_name == crowded)
        core.delete_namespaced_pod(victim.metadata.name, SAMPLE_NS, grace_period_seconds=0)
        return False

    def _routing(self, api) -> None:
        """The sample inference Service split by zone, behind an HTTPRoute at 50/50."""
        core = client.CoreV1Api(api)
        for zone in ("zone-a", "zone-b"):
            core.create_namespaced_service("inference", {"metadata": {"name": f"llm-{zone}"}, "spec": {
                "selector": {"app": "llm"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", "inference", "httproutes", {
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "llm"},
                "spec": {"parentRefs": [{"name": "inference-gateway"}], "rules": [{"backendRefs": [
                    {"name": "llm-zone-a", "port": 80, "weight": 50},
                    {"name": "llm-zone-b", "port": 80, "weight": 50}]}]}})

    def _start_service_exporter(self) -> str:
        """The model servers of each zone are local HTTP servers (the simulated pods' IPs are data)."""
        self.endpoints = {zone: Endpoint() for zone in ("zone-a", "zone-b")}
        cfg = {"interval": "2s", "modules": {"completion": {"prober": "inference", "timeout": "10s",
                                                            "inference": {"model": "llm"}}},
               "targets": [{"name": f"llm-{z}", "url": e.url, "module": "completion",
                            "labels": {"namespace": "inference", "service": "llm", "zone": z}}
                           for z, e in self.endpoints.items()]}
        path = self.workdir / "services.yaml"
        path.write_text(yaml.safe_dump(cfg))
        port = free_port()
        self._spawn("service-exporter", [sys.executable, "-m", "exporters.service.cli", "--config", str(path),
                                         "--listen", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}/healthz")
        return f"http://127.0.0.1:{port}"

    def route_weights(self) -> dict[str, int]:
        r = client.CustomObjectsApi(self.cp.api_client()).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", "inference", "httproutes", "llm")
        return {b["name"]: b["weight"] for b in r["spec"]["rules"][0]["backendRefs"]}

    def latency_timeline(self, timeout: float = 150) -> Timeline:
        """Zone A's model servers get slow (3 s to the first token, over the 2.5 s latency bound)."""
        tl = Timeline("zone-a", "pull", time.time())
        self.endpoints["zone-a"].first_token_delay = 3.0
        sel = 'namespace="inference", service="llm", zone="zone-a"'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and tl.acted is None:
            now = time.time()
            if tl.scraped is None and self.stack.query(f"probe_duration_seconds{{{sel}}} > 2.5"):
                tl.scraped = now
            if tl.firing is None and self.stack.query(f'ALERTS{{alertname="InferenceLatencyBudgetBurn", '
                                                      f'alertstate="firing", severity="critical", {sel}}}'):
                tl.firing = now
            if self.route_weights().get("llm-zone-a") == 0:
                tl.acted = now
            time.sleep(0.2)
        for inc in self.incidents():
            if inc["alertname"] == "InferenceLatencyBudgetBurn":
                tl.received = _epoch(inc["received_at"])
        return tl

    def _start_remediator(self) -> None:
        cfg = yaml.safe_load((REPO / "remediator/examples/vigil.yaml").read_text())
        cfg["auth"] = {"bearer_token_env": "VIGIL_WEBHOOK_TOKEN"}
        cfg["ledger"] = {"path": str(self.workdir / "ledger.db")}
        cfg["kubernetes"] = {"kubeconfig": str(self.cp.kubeconfig)}
        cfg["leader_election"] = {"name": f"vigil-{secrets.token_hex(4)}"}  # not the Lease of an earlier run
        cfg["prometheus"] = {"url": f"http://127.0.0.1:{self._prometheus_port}"}
        cfg["safety"]["budget"] = {"max_nodes": self.nodes // 2, "min_nodes": 1}
        cfg["repair"].update({  # the simulated node agent answers within a second
            "reset_gpu": {"timeout": "60s"}, "reboot": {"provider": "job", "job": {"timeout": "60s"}},
            "validate": {"job": {"timeout": "60s"}, "queries": cfg["repair"]["validate"]["queries"]},
            "replace": {"provider": ""}, "repeat_offenders": {"max_repairs": self.max_repairs, "window": "7d"},
            "silences": {**cfg["repair"]["silences"],
                         "alertmanager_url": f"http://127.0.0.1:{self._alertmanager_port}"}})
        cfg["safety"]["breaker"]["max_actions"] = 60  # the demo runs five repair ladders in a few minutes
        for rule in cfg["policy"]["rules"]:
            if rule["name"] == "gpu-xid-node-fatal":  # the demo's repeat offender fails three times in a row
                rule.update(cooldown="0s", max_actions=20)
        # The example's notifications and links point at 127.0.0.1:9093; here Alertmanager has its own port.
        am = self.stack.alertmanager_url
        cfg["notifications"] = {"alertmanager_urls": [am]} if am else {}
        cfg["ui"] = {"alertmanager_url": am} if am else {}
        path = self.workdir / "vigil.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        port = free_port()
        self.remediator_url = f"http://127.0.0.1:{port}"
        self._spawn("remediator", [sys.executable, "-m", "remediator.cli", "serve", "--config", str(path),
                                   "--listen", f"127.0.0.1:{port}"], f"{self.remediator_url}/healthz",
                    {"VIGIL_WEBHOOK_TOKEN": self.token})

    # ---- faults and their timelines -----------------------------------------------------------

    def inject(self, node: str, body: dict) -> float:
        t = time.time()
        requests.post(f"{self.exporters[node]}/simulate", json=body, timeout=10).raise_for_status()
        return t

    def incidents(self) -> list[dict]:
        r = requests.get(f"{self.remediator_url}/api/incidents", params={"limit": 500},
                         headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        return r.json()["items"]

    def xid_timeline(self, node: str, gpu: int = 3, xid: int = 79, timeout: float = 60) -> Timeline:
        core = client.CoreV1Api(self.cp.api_client())
        tl = Timeline(node, "fast" if self.node_names.index(node) < self.fast_nodes else "pull",
                      self.inject(node, {"gpu": gpu, "fault": "xid", "xid": xid}))
        sel = f'node="{node}", gpu="{gpu}", xid="{xid}"'
        deadline = time.monotonic() + timeout
        checked = 0.0
        while time.monotonic() < deadline and (tl.acted is None or tl.scraped is None or tl.firing is None):
            # Repaired (by the fast path) before the rule fired: the fault is no longer pending, it never will.
            if tl.firing is None and tl.acted and tl.scraped and time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if self._repaired(node, gpu):
                    break
            now = time.time()
            if tl.acted is None and core.read_node(node).spec.unschedulable:
                tl.acted = now
            if tl.scraped is None and self.stack.query(f"gpu_xid_errors_total{{{sel}}} > 0"):
                tl.scraped = now
            if tl.firing is None and self.stack.query(f'ALERTS{{alertname="GpuXidCritical", alertstate="firing", '
                                                      f"{sel}}}"):
                tl.firing = now
            time.sleep(0.02)
        done = False
        while time.monotonic() < deadline and not done:
            for inc in self._xid_incidents(node, gpu):
                if inc["status"] not in ("pending", "acting"):
                    done = True
                    tl.received = _epoch(inc["received_at"])
                    for a in self.incident(inc["id"])["actions"]:
                        if a["state"] in ("succeeded", "failed", "blocked") and a["finished_at"]:
                            tl.steps[f"{a['type']} {a['state']}" if a["state"] != "succeeded" else a["type"]] = \
                                _epoch(a["finished_at"])
                    if inc["status"] == "blocked":  # e.g. repair_exhausted: the node became an RMA candidate
                        tl.steps[f"refused ({inc['reason']})"] = _epoch(inc["updated_at"])
                    tl.drained = tl.steps.get("drain_node")
            time.sleep(0.1)
        return tl

    def _xid_incidents(self, node: str, gpu: int) -> list[dict]:
        return [i for i in self.incidents() if i["labels"].get("node") == node and
                i["labels"].get("gpu") == str(gpu) and i["alertname"] == "GpuXidCritical"]

    def _repaired(self, node: str, gpu: int) -> bool:
        return any(i["status"] == "succeeded" for i in self._xid_incidents(node, gpu))

    def incident(self, incident_id: int) -> dict:
        r = requests.get(f"{self.remediator_url}/api/incidents/{incident_id}",
                         headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        return r.json()

    @staticmethod
    def floors() -> dict[str, str]:
        ev = generate._seconds(generate.Settings().gpu_interval)
        scrape = generate._seconds(SCRAPE)
        return {"pull": f"{scrape + ev + 0 + 1} s (scrape {scrape} s + evaluation {ev} s + for 0 s + group_wait 1 s)",
                "fast": "1 s (group_wait 1 s; the NVML event is immediate)"}

    def stop(self) -> None:
        if getattr(self, "agent", None):
            self.agent.stop()
        if self.stack:
            self.stack.stop()
        if self.cp:
            self.cp.stop()
        for e in self.endpoints.values():
            e.close()

    def describe(self) -> str:
        return json.dumps({"remediator": self.remediator_url, "prometheus": self.stack.prometheus_url,
                           "endpoints": {z: e.url for z, e in self.endpoints.items()},
                           "alertmanager": self.stack.alertmanager_url, "kubeconfig": str(self.cp.kubeconfig),
                           "exporters": self.exporters}, indent=2)


class NodeAgent:
    """The simulated nodes' side of a repair: when a reboot Job lands on a node, the node "reboots"
    (a new bootID, as a kubelet reports after boot) and its simulated GPUs come back clean (the
    exporter's simulated reboot: no faults, a new boot ID, so its latched faults are cleared). GPU
    reset Jobs reset the simulated GPUs (their faults and latched faults cleared)."""

    def __init__(self, api, exporters: dict[str, str]) -> None:
        import threading

        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self.exporters = exporters
        self.done: dict[str, float] = {}  # Job name -> when the agent acted on it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-agent", daemon=True)
        self._thread.start()

    @staticmethod
    def prepare(api) -> None:
        """The repair namespace and the RuntimeClass the repair Jobs name."""
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "vigil-repair"}})
        client.NodeV1Api(api).create_runtime_class({"metadata": {"name": "nvidia"}, "handler": "nvidia"})

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                for job in self.batch.list_namespaced_job("vigil-repair").items:
                    kind = (job.metadata.labels or {}).get("vigil.io/repair")
                    if job.metadata.name in self.done or kind not in ("reboot", "reset-gpu"):
                        continue
                    node = job.spec.template.spec.node_name
                    for body in ([{"fault": "reboot"}] if kind == "reboot" else
                                 [{"gpu": gpu, "fault": "reset"} for gpu in range(8)]):
                        requests.post(f"{self.exporters[node]}/simulate", json=body, timeout=5).raise_for_status()
                    if kind == "reboot":
                        self.core.patch_node_status(node, {"status": {"nodeInfo": {"bootID": secrets.token_hex(8)}}})
                    self.done[job.metadata.name] = time.time()
            except Exception:  # the cluster going away at the end
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
