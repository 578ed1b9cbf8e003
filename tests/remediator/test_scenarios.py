"""Adversarial scenarios against the real remediator: its HTTP server (waitress on 127.0.0.1), the
real engine and ledger, the real local cluster. Each scenario asserts that nothing harmful
happened and that the block reason is visible in GET /api/incidents/<id> and in
vigil_blocked_total{reason} scraped from /metrics."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from waitress import create_server

from tests.k8s.controlplane import free_port, gpu_node, wait_until

from .payloads import alert, body, xid_labels

pytestmark = [pytest.mark.k8s, pytest.mark.integration]
NS_POD = {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}
NODE = {"node": "{{ labels.node }}"}
CORDON = {"type": "cordon_node", "params": NODE}


class Served:
    """The harness's app behind a real HTTP server."""

    def __init__(self, h) -> None:
        self.h = h
        self.server = create_server(h.app, host="127.0.0.1", port=0, threads=4)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.s = requests.Session()
        self.s.headers.update(h.headers)

    def post(self, payload: dict) -> dict:
        r = self.s.post(f"{self.url}/webhook/alertmanager", json=payload, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def incidents(self, **query) -> list[dict]:
        return self.s.get(f"{self.url}/api/incidents", params={"limit": 500, **query}, timeout=10).json()["items"]

    def incident(self, incident_id: int) -> dict:
        return self.s.get(f"{self.url}/api/incidents/{incident_id}", timeout=10).json()

    def blocked_total(self, reason: str) -> float:
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        for fam in text_string_to_metric_families(text):
            if fam.name == "vigil_blocked":
                return sum(s.value for s in fam.samples if s.name == "vigil_blocked_total"
                           and s.labels.get("reason") == reason)
        return 0.0

    def settled(self, count: int = 1, timeout: float = 60) -> list[dict]:
        def done():
            items = self.incidents()
            return items if len(items) >= count and not [i for i in items if i["status"] in ("pending", "acting")] \
                else None
        return wait_until(done, timeout, what=f"{count} incidents decided")

    def assert_blocked(self, reason: str, *, at_least: int = 1) -> list[dict]:
        """The reason is in the API (the incident's reason, or a later step's audit record) and the metric."""
        hits = []
        for i in self.incidents():
            d = self.incident(i["id"])
            audited = [a for a in d["audit"] if a["detail"].get("reason") == reason]
            actions = [a for a in d["actions"] if a["result"].get("reason") == reason]
            if i["reason"] == reason or audited or actions:
                hits.append(d)
        assert len(hits) >= at_least, (reason, [(i["status"], i["reason"]) for i in self.incidents()])
        assert self.blocked_total(reason) >= at_least
        return hits

    def stop(self) -> None:
        self.s.close()  # keep-alive channels would keep the server's loop running
        self.server.close()
        self.server.task_dispatcher.shutdown()
        self.thread.join(5)
        assert not self.thread.is_alive(), "the HTTP server stopped"


@pytest.fixture
def served(remediator) -> Iterator:
    made = []

    def make(**kw) -> Served:
        s = Served(remediator(**kw))
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def unavailable(h, names) -> list[str]:
    return [n for n in names if h.core.read_node(n).spec.unschedulable or h.core.read_node(n).spec.taints]


def rule(name, alertname, actions, **extra):
    return {"name": name, "match": [f'alertname="{alertname}"'], "actions": actions, **extra}


# ---- storms ------------------------------------------------------------------------------------

def test_alert_storm_over_all_nodes(served):
    s = served(nodes=12, overrides={"safety": {"budget": {"max_nodes": 3, "max_percent": 25},
                                               "breaker": {"max_actions": 8, "window": "5m"}}})
    for node in s.h.nodes:
        for gpu in range(3):
            s.post(body(alert(xid_labels(node, gpu=str(gpu)))))
    s.settled(36)
    assert len(unavailable(s.h, s.h.nodes)) <= 3
    # the rest waits in the queue (the budget, or the repair already running on its node): waits are
    # not attempts, so the breaker (8) stays closed with 3 plans of 2 actions
    s.assert_blocked("budget", at_least=9)
    queued = s.s.get(f"{s.url}/api/queue", timeout=10).json()
    assert queued["total"] >= 9 and {q["reason"] for q in queued["items"]} <= {"budget", "joined", "cooldown"}


def test_xid_burst_across_77_of_80_nodes_over_a_minute(served):
    s = served(nodes=80, overrides={"safety": {"budget": {"max_nodes": None, "max_percent": 10},
                                               "breaker": {"max_actions": 200, "window": "5m"}}})
    now = dt.datetime.now(dt.UTC)
    for batch in range(0, 77, 11):  # Alertmanager groups: 7 bodies, startsAt spread over the last minute
        s.post(body(*[alert(xid_labels(n), starts_at=now - dt.timedelta(seconds=60 - i * 0.75))
                      for i, n in enumerate(s.h.nodes[batch:batch + 11], start=batch)]))
    s.settled(77, timeout=120)
    out = unavailable(s.h, s.h.nodes)
    assert 1 <= len(out) <= 8, out  # 10 % of 80
    s.assert_blocked("budget", at_least=69)


# ---- stale, replayed, resolved, flapping ----------------------------------------------------------

def test_stale_and_replayed_notifications(served):
    s = served(nodes=3)
    s.post(body(alert(xid_labels(s.h.nodes[0]), starts_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))))
    fresh = s.h.xid(s.h.nodes[1])
    s.post(fresh)
    s.settled(2)
    fresh["alerts"][0]["status"] = "resolved"
    s.post(fresh)
    fresh["alerts"][0]["status"] = "firing"
    assert s.post(fresh)["duplicates"] == 1  # a replay of the same (fingerprint, startsAt): nothing new
    s.settled(2)
    assert not s.h.unschedulable(s.h.nodes[0])
    assert [a["type"] for i in s.incidents() for a in s.incident(i["id"])["actions"]] == ["cordon_node",
                                                                                        "drain_node"]
    s.assert_blocked("stale")


def test_resolve_before_and_during_execution(served):
    s = served(nodes=2, policy={"rules": [rule("slow", "GpuXidCritical", [CORDON], min_firing="30s"),
                                          rule("drain", "GpuLost", [
                                              CORDON, {"type": "drain_node", "params": {**NODE, "timeout": "6s"}},
                                              {"type": "taint_node", "params": NODE}],
                                              on_resolved={"uncordon": True})]})
    before = s.h.xid(s.h.nodes[0])
    s.post(before)
    before["alerts"][0]["status"] = "resolved"
    assert s.post(before)["cancelled"] == 1
    victim = s.h.nodes[1]
    s.h.deploy("pinned", 2, nodeSelector={"kubernetes.io/hostname": victim})
    policy = client.PolicyV1Api(s.h.api)
    policy.create_namespaced_pod_disruption_budget(s.h.namespace, {
        "metadata": {"name": "pdb"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "pinned"}}}})
    wait_until(lambda: (policy.read_namespaced_pod_disruption_budget("pdb", s.h.namespace).status
                        .observed_generation or 0) >= 1, 30, what="PDB status")
    during = body(alert({"alertname": "GpuLost", "node": victim, "gpu": "1"}))
    s.post(during)
    wait_until(lambda: any(a["type"] == "drain_node" and a["state"] == "running" for i in s.incidents()
                           for a in s.incident(i["id"])["actions"]), 30, interval=0.05, what="drain running")
    during["alerts"][0]["status"] = "resolved"
    s.post(during)
    wait_until(lambda: all(i["after_resolve"] or i["status"] == "cancelled" for i in s.incidents()), 40,
               what="after_resolve")
    by = {i["alertname"]: i for i in s.incidents()}
    assert by["GpuXidCritical"]["status"] == "cancelled" and not s.h.unschedulable(s.h.nodes[0])
    assert by["GpuLost"]["status"] != "cancelled" and "uncordon" in by["GpuLost"]["after_resolve"]
    assert not unavailable(s.h, [victim]), "cordon undone on resolve, the late taint never ran"
    s.assert_blocked("pdb")


def test_flapping_alert_is_acted_on_once(served):
    s = served(nodes=2, policy={"rules": [rule("gpu", "GpuXidCritical", [CORDON], cooldown="30m")]})
    labels = xid_labels(s.h.nodes[0])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=50)
    for k in range(5):  # fires, resolves, fires again: each startsAt is a new incident
        a = alert(labels, starts_at=start + dt.timedelta(seconds=10 * k))
        s.post(body(a))
        s.settled(k + 1)
        a["status"] = "resolved"
        s.post(body(a))
    acted = [a for i in s.incidents() for a in s.incident(i["id"])["actions"] if a["state"] == "succeeded"]
    assert len(acted) == 1
    s.assert_blocked("cooldown", at_least=4)


# ---- Prometheus down, PDB, last replica ------------------------------------------------------------

def test_prometheus_down_during_guard_and_during_verify(served):
    dead = f"http://127.0.0.1:{free_port()}"
    s = served(nodes=2, overrides={"prometheus": {"url": dead}}, policy={"rules": [
        rule("guarded", "GpuXidCritical", [CORDON], guard={"query": "up == 1"}),
        rule("verified", "InferenceEndpointDown", [{"type": "restart_pod", "params": NS_POD}],
             verify={"query": "up == 1", "deadline": "2s", "interval": "500ms"},
             escalate={"steps": [{"type": "rollout_restart", "params": {"namespace": "{{ labels.namespace }}",
                                                                        "name": "llm"}}]})]})
    s.h.deploy("llm", 2)
    s.post(s.h.xid(s.h.nodes[0]))
    s.post(body(alert({"alertname": "InferenceEndpointDown", "namespace": s.h.namespace,
                       "pod": s.h.running("llm")[0].metadata.name})))
    s.settled(2)
    wait_until(lambda: any(i["verification"] == "unverifiable" for i in s.incidents()), 30, what="unverifiable")
    assert not s.h.unschedulable(s.h.nodes[0])
    assert not [a for i in s.incidents() for a in s.incident(i["id"])["actions"] if a["type"] == "rollout_restart"]
    s.assert_blocked("guard_unavailable")
    s.assert_blocked("unverifiable")


def test_pdb_blocks_a_drain(served):
    s = served(nodes=2, policy={"rules": [rule("drain", "GpuXidCritical", [
        CORDON, {"type": "drain_node", "params": {**NODE, "timeout": "3s"}}])]})
    victim = s.h.nodes[0]
    s.h.deploy("pinned", 2, nodeSelector={"kubernetes.io/hostname": victim})
    client.PolicyV1Api(s.h.api).create_namespaced_pod_disruption_budget(s.h.namespace, {
        "metadata": {"name": "pdb"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "pinned"}}}})
    wait_until(lambda: (client.PolicyV1Api(s.h.api).read_namespaced_pod_disruption_budget("pdb", s.h.namespace)
                        .status.observed_generation or 0) >= 1, 30, what="PDB status")
    s.post(s.h.xid(victim))
    s.settled()
    assert len(s.h.running("pinned")) == 2
    s.assert_blocked("pdb")


def test_last_ready_replica(served):
    s = served(nodes=1, policy={"rules": [rule("restart", "InferenceEndpointDown",
                                               [{"type": "restart_pod", "params": NS_POD}])]})
    s.h.deploy("llm", 1)
    [pod] = s.h.running("llm")
    s.post(body(alert({"alertname": "InferenceEndpointDown", "namespace": s.h.namespace,
                       "pod": pod.metadata.name})))
    s.settled()
    assert [p.metadata.uid for p in s.h.running("llm")] == [pod.metadata.uid]
    s.assert_blocked("availability")


# ---- ownership, pauses, node_selector ---------------------------------------------------------------

def test_operator_uncordon_and_recordon(served):
    s = served(nodes=2, policy={"rules": [rule("gpu", "GpuXidCritical", [CORDON], on_resolved={"uncordon": True})]})
    node = s.h.nodes[0]
    payload = s.h.xid(node)
    s.post(payload)
    s.settled()
    s.h.core.patch_node(node, {"spec": {"unschedulable": False}})
    s.h.core.patch_node(node, {"spec": {"unschedulable": True}})
    payload["alerts"][0]["status"] = "resolved"
    s.post(payload)
    wait_until(lambda: s.incidents()[0]["after_resolve"], 30, what="after_resolve")
    assert s.h.unschedulable(node)
    s.assert_blocked("foreign_cordon")


def test_node_and_namespace_pause_and_global_pause_during_escalation(served):
    ladder = {"steps": [{"type": "rollout_restart", "params": {"namespace": "{{ labels.namespace }}",
                                                               "name": "llm"}}]}
    s = served(nodes=3, policy={"rules": [
        rule("gpu", "GpuXidCritical", [CORDON]),
        rule("restart", "InferenceEndpointDown", [{"type": "restart_pod", "params": NS_POD}],
             verify={"alert_resolved": True, "deadline": "4s", "interval": "500ms"}, escalate=ladder)]})
    s.h.core.patch_node(s.h.nodes[0], {"metadata": {"annotations": {"vigil.io/remediation": "disabled"}}})
    s.post(s.h.xid(s.h.nodes[0]))
    other_ns = f"{s.h.namespace}-paused"
    s.h.core.create_namespace({"metadata": {"name": other_ns, "annotations": {"vigil.io/remediation": "disabled"}}})
    s.post(body(alert({"alertname": "InferenceEndpointDown", "namespace": other_ns, "pod": "x"})))
    s.settled(2)
    s.h.deploy("llm", 2)
    s.post(body(alert({"alertname": "InferenceEndpointDown", "namespace": s.h.namespace,
                       "pod": s.h.running("llm")[0].metadata.name})))
    wait_until(lambda: any(a["type"] == "restart_pod" and a["state"] == "succeeded" for i in s.incidents()
                           for a in s.incident(i["id"])["actions"]), 30, interval=0.05, what="restart done")
    assert s.s.post(f"{s.url}/api/pause", json={"paused": True}, timeout=10).status_code == 200
    wait_until(lambda: any(a["event"] == "escalation:wait" for i in s.incidents()
                           for a in s.incident(i["id"])["audit"]), 30, what="escalation held by the pause")
    assert not s.h.unschedulable(s.h.nodes[0])
    assert not [a for i in s.incidents() for a in s.incident(i["id"])["actions"] if a["type"] == "rollout_restart"]
    s.assert_blocked("paused", at_least=3)


def test_node_outside_node_selector(served):
    s = served(nodes=1)
    other = f"{s.h.pool}-elsewhere"
    s.h.core.create_node(gpu_node(other, pool=f"{s.h.pool}-other"))
    s.post(body(alert(xid_labels(other))))
    s.settled()
    assert not s.h.unschedulable(other)
    [d] = s.assert_blocked("outside_node_selector")
    assert "outside node_selector" in d["detail"]


# ---- budgets ------------------------------------------------------------------------------------

def test_not_ready_nodes_count_in_the_budget(served):
    s = served(nodes=20, overrides={"safety": {"budget": {"max_nodes": None, "max_percent": 15}}})
    for i in range(3):  # not kwok-managed: they never become Ready
        spec = gpu_node(f"{s.h.pool}-sick{i}", pool=s.h.pool)
        spec["metadata"]["annotations"] = {}
        s.h.core.create_node(spec)
    for node in s.h.nodes[:5]:
        s.post(s.h.xid(node))
    s.settled(5)
    out = unavailable(s.h, s.h.nodes)
    assert len(out) == 0, out  # 15 % of 23 = 3, and 3 are NotReady already
    [d, *_] = s.assert_blocked("budget", at_least=5)
    assert "NotReady" in d["detail"] and "of 23 managed nodes unavailable" in d["detail"]


def test_per_pool_budgets(served):
    s = served(nodes=8, overrides={"safety": {"budget": {"max_nodes": 6, "pools": {
        "label": "topology.kubernetes.io/zone", "default": {"max_nodes": 1}}}}})
    zone_a = s.h.nodes[0::2]  # add_gpu_nodes alternates zone-a and zone-b
    for node in zone_a:  # a storm in zone-a
        s.post(s.h.xid(node))
    s.settled(len(zone_a))
    s.post(s.h.xid(s.h.nodes[1]))  # then one fault in zone-b
    s.settled(len(zone_a) + 1)
    assert len(unavailable(s.h, zone_a)) == 1 and s.h.unschedulable(s.h.nodes[1])
    [d, *_] = s.assert_blocked("budget", at_least=3)
    assert "pool topology.kubernetes.io/zone=zone-a" in d["detail"]
    metrics = requests.get(f"{s.url}/metrics", timeout=10).text
    assert 'vigil_disruption_budget_pool_nodes{pool="zone-b",state="allowed"} 1.0' in metrics
