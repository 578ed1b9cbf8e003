"""An in-process remediator (the real app, engine, ledger and Kubernetes client) against the
session's local cluster, on a node pool of its own so budgets do not see other tests' nodes."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from remediator.cluster.kube import Kube
from remediator.config import Config, parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app
from tests.k8s.controlplane import add_gpu_nodes, wait_until

from .payloads import alert, body, xid_labels

TOKEN = "test-token-0123456789"
BASE_POLICY = {
    "rules": [
        {"name": "gpu-xid-node-fatal", "match": ['alertname="GpuXidCritical"', 'node!=""'],
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
                     {"type": "drain_node", "params": {"node": "{{ labels.node }}", "timeout": "20s"}}],
         "cooldown": "30m"},
        {"name": "gpu-lost", "match": ['alertname="GpuLost"'],
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
                     {"type": "taint_node", "params": {"node": "{{ labels.node }}", "key": "vigil.io/gpu-lost",
                                                       "value": "gpu{{ labels.gpu }}", "effect": "NoSchedule"}}]},
        {"name": "gpu-healthy-again", "match": ['alertname="GpuNodeHealthy"'],
         "actions": [{"type": "uncordon_node", "params": {"node": "{{ labels.node }}"}}]},
    ],
}


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Harness:
    config: Config
    ledger: SQLiteLedger
    engine: Engine
    metrics: Metrics
    http: Any  # Flask test client
    api: Any
    pool: str
    nodes: list[str]
    namespace: str
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})
    app: Any = None  # the Flask app, for tests that serve it over real HTTP

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def post(self, payload: dict):
        return self.http.post("/webhook/alertmanager", json=payload, headers=self.headers)

    def xid(self, node: str, **kw) -> dict:
        return body(alert(xid_labels(node), **kw))

    def incidents(self, **query) -> list[dict]:
        return self.http.get("/api/incidents", query_string=query, headers=self.headers).get_json()["items"]

    def incident(self, incident_id: int) -> dict:
        return self.http.get(f"/api/incidents/{incident_id}", headers=self.headers).get_json()

    def wait_status(self, *statuses: str, timeout: float = 90, count: int = 1) -> list[dict]:
        def done():
            items = self.incidents(limit=500)
            return items if len(items) >= count and all(i["status"] in statuses for i in items) else None
        return wait_until(done, timeout, what=f"incidents {statuses}")

    def unschedulable(self, node: str) -> bool:
        return bool(self.core.read_node(node).spec.unschedulable)

    def deploy(self, name: str, replicas: int, **pod_spec) -> None:
        labels = {"app": name}
        spec = {"containers": [{"name": "app", "image": "example.invalid/llm:1"}],
                "terminationGracePeriodSeconds": 0, "nodeSelector": {"vigil.io/pool": self.pool},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                               "whenUnsatisfiable": "ScheduleAnyway",
                                               "labelSelector": {"matchLabels": labels}}]}
        spec.update(pod_spec)
        client.AppsV1Api(self.api).create_namespaced_deployment(self.namespace, {
            "metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                                                 "template": {"metadata": {"labels": labels}, "spec": spec}}})
        self.wait_running(name, replicas)

    def running(self, app: str) -> list:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"app={app}").items
        return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]

    def wait_running(self, app: str, n: int, timeout: float = 60) -> list:
        return wait_until(lambda: len(self.running(app)) == n and self.running(app), timeout,
                          what=f"{n} running pods of {app}")


@pytest.fixture
def remediator(k8s_cluster, tmp_path, unique) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(nodes: int = 3, overrides: dict | None = None, policy: dict | None = None,
             clock: Callable[[], dt.datetime] | None = None) -> Harness:
        pool = f"pool-{unique}"
        api = k8s_cluster.api_client()
        names = [f"{pool}-n{i}" for i in range(nodes)]
        add_gpu_nodes(api, names, pool=pool)
        core = client.CoreV1Api(api)
        def in_service(name: str) -> bool:  # Ready, and the node lifecycle controller's not-ready taint gone
            node = core.read_node(name)
            ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
            return ready and not node.spec.taints
        wait_until(lambda: all(in_service(n) for n in names), 60, what="nodes Ready and untainted")
        ns = f"ns-{unique}"
        core.create_namespace({"metadata": {"name": ns}})
        raw = deep_merge({
            "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
            "ledger": {"path": str(tmp_path / "ledger.db")},
            "kubernetes": {"kubeconfig": str(k8s_cluster.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
            "safety": {"max_alert_age": "1h", "budget": {"max_nodes": 2, "min_nodes": 1},
                       "breaker": {"max_actions": 50, "window": "5m"}},
            "policy": policy or BASE_POLICY,
        }, overrides or {})
        import os

        os.environ["VIGIL_TEST_TOKEN"] = TOKEN
        config = parse_config(raw, "test.yaml")
        ledger = SQLiteLedger(config.ledger_path)
        metrics = Metrics(ledger.counts_by_status)
        kube = Kube(config.kubeconfig, node_selector=config.node_selector)
        engine = Engine(config, ledger, kube, metrics, **({"clock": clock} if clock else {}))
        app = create_app(config, ledger, engine, metrics)
        engine.start()
        h = Harness(config, ledger, engine, metrics, app.test_client(), api, pool, names, ns, app=app)
        made.append(h)
        return h

    yield make
    for h in made:
        h.engine.stop()
        h.ledger.close()


def ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def vigil_crds(k8s_api):
    """The VigilIncident and VigilState CRDs from deploy/crds, applied once per session."""
    from .ledgers import apply_crds

    apply_crds(k8s_api)
    return k8s_api


@pytest.fixture(scope="session")
def vigil_crds_cluster(k8s_cluster):
    """The same CRDs on the whole-cluster tier (the HA tests need kwok nodes too)."""
    from .ledgers import apply_crds

    apply_crds(k8s_cluster)
    return k8s_cluster
