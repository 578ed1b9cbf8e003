"""Node actions and safety rails against the real local control plane."""

from __future__ import annotations

import time

import pytest

from tests.k8s.controlplane import wait_until

from .conftest import ago
from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s


def _events(h, node: str) -> set[str]:
    evs = h.core.list_namespaced_event("default", field_selector=f"involvedObject.name={node}").items
    return {e.reason for e in evs}


def test_xid_alert_cordons_and_drains_the_node_and_its_pods_move(remediator):
    h = remediator(nodes=3)
    h.deploy("llm", 6)
    victim = h.running("llm")[0].spec.node_name  # a node that has pods to move
    started = time.monotonic()
    r = h.post(h.xid(victim))
    assert r.status_code == 200 and r.get_json()["new"] == 1
    wait_until(lambda: h.unschedulable(victim), 10, interval=0.02, what="cordon")
    print(f"\nwebhook -> node unschedulable: {time.monotonic() - started:.3f} s")
    [inc] = h.wait_status("succeeded")
    pods = h.wait_running("llm", 6)
    assert victim not in {p.spec.node_name for p in pods}, "evicted pods were rescheduled elsewhere"
    detail = h.incident(inc["id"])
    assert [(a["type"], a["state"]) for a in detail["actions"]] == [("cordon_node", "succeeded"),
                                                                   ("drain_node", "succeeded")]
    assert detail["actions"][1]["result"]["evicted"], "the drain evicted the pods"
    assert {"decision:act", "action:cordon_node", "action:drain_node"} <= {a["event"] for a in detail["audit"]}
    assert {"VigilCordon", "VigilDrain"} <= _events(h, victim)
    node = h.core.read_node(victim)
    assert node.metadata.annotations["vigil.io/cordoned-by"] == "vigil"


def test_the_same_payload_fifty_times_is_one_incident_and_one_action(remediator):
    h = remediator(nodes=2)
    payload = h.xid(h.nodes[0])
    for _ in range(50):
        assert h.post(payload).status_code == 200
    [inc] = h.wait_status("succeeded")
    assert inc["notifications"] == 50
    assert [a["type"] for a in h.incident(inc["id"])["actions"]] == ["cordon_node", "drain_node"]
    assert h.metrics.dedupe_hits._value.get() == 49


def test_drain_blocked_by_a_pdb_is_reported_with_the_pdb(remediator):
    from kubernetes import client

    h = remediator(nodes=2, policy={"rules": [
        {"name": "drain", "match": ['alertname="GpuXidCritical"'],
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
                     {"type": "drain_node", "params": {"node": "{{ labels.node }}", "timeout": "4s"}}]}]})
    victim = h.nodes[0]
    h.deploy("pinned", 2, nodeSelector={"kubernetes.io/hostname": victim})
    client.PolicyV1Api(h.api).create_namespaced_pod_disruption_budget(h.namespace, {
        "metadata": {"name": "pinned-pdb"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "pinned"}}}})
    wait_until(lambda: (client.PolicyV1Api(h.api).read_namespaced_pod_disruption_budget("pinned-pdb", h.namespace)
                        .status.observed_generation or 0) >= 1, 30, what="PDB status")
    h.post(h.xid(victim))
    [inc] = h.wait_status("blocked", timeout=40)
    detail = h.incident(inc["id"])
    drain = detail["actions"][1]
    assert drain["state"] == "blocked"
    assert f"{h.namespace}/pinned-pdb" in drain["result"]["detail"]
    assert set(drain["result"]["blocked_by"].values()) == {f"{h.namespace}/pinned-pdb"}
    assert len(h.running("pinned")) == 2, "the PDB was honoured"
    assert "VigilDrainBlocked" in _events(h, victim)
    assert h.metrics.blocked.labels("pdb")._value.get() == 1


def test_resolved_before_execution_means_no_action(remediator):
    h = remediator(nodes=2, policy={"rules": [
        {"name": "slow", "match": ['alertname="GpuXidCritical"'], "min_firing": "3s",
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]})
    labels = xid_labels(h.nodes[0])
    starts = ago(0)
    h.post(body(alert(labels, starts_at=starts)))
    assert h.incidents()[0]["status"] in ("pending", "deferred")
    r = h.post(body(alert(labels, starts_at=starts, status="resolved")))
    assert r.get_json()["cancelled"] == 1
    time.sleep(4)
    [inc] = h.incidents()
    assert inc["status"] == "cancelled" and not h.incident(inc["id"])["actions"]
    assert not h.unschedulable(h.nodes[0])


def test_stale_alert_is_recorded_not_acted_on(remediator):
    h = remediator(nodes=2)
    h.post(body(alert(xid_labels(h.nodes[0]), starts_at=ago(7200))))
    [inc] = h.wait_status("blocked")
    assert inc["reason"] == "stale"
    assert not h.unschedulable(h.nodes[0])


def test_over_budget_waits_with_the_reason_and_goes_on_when_the_budget_frees(remediator):
    h = remediator(nodes=5, overrides={"safety": {"budget": {"max_nodes": 1, "min_nodes": 1}}})
    h.core.patch_node(h.nodes[4], {"spec": {"unschedulable": True}})  # an operator's maintenance
    h.post(h.xid(h.nodes[0]))
    [inc] = h.wait_status("waiting")
    assert inc["reason"] == "budget" and h.nodes[4] in inc["detail"]
    assert not h.unschedulable(h.nodes[0])
    h.core.patch_node(h.nodes[4], {"spec": {"unschedulable": False}})  # the maintenance ends
    wait_until(lambda: h.unschedulable(h.nodes[0]), 45, what="the held fault acted on")


def test_alert_storm_opens_the_breaker_and_stays_within_the_budget(remediator):
    h = remediator(nodes=20, overrides={"safety": {"budget": {"max_nodes": 6, "max_percent": 50},
                                                   "breaker": {"max_actions": 8, "window": "5m"}}})
    for i in range(100):  # e.g. Prometheus lost every target: 5 alerts per node
        labels = xid_labels(h.nodes[i % 20], gpu=str(i // 20))
        assert h.post(body(alert(labels))).status_code == 200
    wait_until(lambda: not [i for i in h.incidents(limit=500) if i["status"] in ("pending", "acting")], 60,
               what="all 100 incidents decided")
    wait_until(lambda: h.http.get("/api/state", headers=h.headers).get_json()["breaker_open"], 60,
               what="the breaker opened by the storm's plans")  # (a wait for the cluster view first is no act)
    cordoned = [n for n in h.nodes if h.unschedulable(n)]
    # 4 plans of 2 actions, then the breaker opens; a plan not yet started when it opened is held at its
    # admission like everything else (every rail right before it runs): at most those 4 ran
    assert len(cordoned) <= 4, cordoned
    state = h.http.get("/api/state", headers=h.headers).get_json()
    assert state["breaker_open"] is True
    reasons = {i["reason"] for i in h.incidents(limit=500, status="waiting")}  # held, not dropped
    assert "breaker_open" in reasons
    assert h.metrics.breaker_open._value.get() == 1
    # only an authenticated reset closes it
    assert h.http.post("/api/breaker/reset").status_code == 401
    assert h.http.post("/api/breaker/reset", headers=h.headers).get_json()["was_open"] is True
    assert h.http.get("/api/state", headers=h.headers).get_json()["breaker_open"] is False


def test_dry_run_changes_no_object(remediator):
    h = remediator(nodes=3, overrides={"safety": {"dry_run": True}})
    h.deploy("llm", 3)

    def versions():
        nodes = {n: h.core.read_node(n).metadata.resource_version for n in h.nodes}
        pods = {p.metadata.name: p.metadata.resource_version for p in h.running("llm")}
        return nodes, pods

    before = versions()
    h.post(h.xid(h.nodes[0]))
    h.post(body(alert({"alertname": "GpuLost", "node": h.nodes[1], "gpu": "2"})))
    items = h.wait_status("dry_run", count=2)
    time.sleep(1)
    assert versions() == before
    assert not any(h.unschedulable(n) for n in h.nodes)
    assert h.metrics.actions.labels("cordon_node", "dry_run")._value.get() == 2
    for inc in items:
        assert all(a["state"] == "dry_run" for a in h.incident(inc["id"])["actions"])


def test_taint_for_a_lost_gpu(remediator):
    h = remediator(nodes=2)
    h.post(body(alert({"alertname": "GpuLost", "node": h.nodes[0], "gpu": "5"})))
    h.wait_status("succeeded")
    taints = h.core.read_node(h.nodes[0]).spec.taints
    assert any(t.key == "vigil.io/gpu-lost" and t.value == "gpu5" and t.effect == "NoSchedule" for t in taints)


def test_uncordon_only_what_vigil_cordoned(remediator):
    h = remediator(nodes=3)
    mine, theirs = h.nodes[0], h.nodes[1]
    h.post(h.xid(mine))
    h.wait_status("succeeded")
    h.core.patch_node(theirs, {"spec": {"unschedulable": True}})  # an operator's cordon
    h.post(body(alert({"alertname": "GpuNodeHealthy", "node": theirs})))
    h.post(body(alert({"alertname": "GpuNodeHealthy", "node": mine})))
    wait_until(lambda: len([i for i in h.incidents() if i["status"] not in ("pending", "acting")]) == 3, 30,
               what="decisions")
    by_node = {i["labels"]["node"]: i for i in h.incidents() if i["alertname"] == "GpuNodeHealthy"}
    assert by_node[theirs]["status"] == "blocked" and by_node[theirs]["reason"] == "foreign_cordon"
    assert by_node[mine]["status"] == "succeeded"
    assert h.unschedulable(theirs) and not h.unschedulable(mine)


def test_node_annotation_pauses_remediation(remediator):
    h = remediator(nodes=2)
    h.core.patch_node(h.nodes[0], {"metadata": {"annotations": {"vigil.io/remediation": "disabled"}}})
    h.post(h.xid(h.nodes[0]))
    [inc] = h.wait_status("waiting")
    assert inc["reason"] == "paused" and not h.unschedulable(h.nodes[0])


def test_global_pause_is_authenticated_and_blocks(remediator):
    h = remediator(nodes=2)
    assert h.http.post("/api/pause", json={"paused": True}).status_code == 401
    assert h.http.post("/api/pause", json={"paused": "yes"}, headers=h.headers).status_code == 400
    assert h.http.post("/api/pause", json={"paused": True}, headers=h.headers).status_code == 200
    h.post(h.xid(h.nodes[0]))
    [inc] = h.wait_status("waiting")
    assert inc["reason"] == "paused" and not h.unschedulable(h.nodes[0])
