"""Regression tests for the harmful actions found with adversarial scenarios (issue 13), each on the
real local control plane with the real engine: every one of them changed the cluster before the
one gate existed."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.k8s.controlplane import free_port, gpu_node, wait_until

from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s
NS_POD = {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}
WORKLOAD = {"namespace": "{{ labels.namespace }}", "name": "llm"}
LADDER = {"steps": [{"type": "rollout_restart", "params": WORKLOAD},
                    {"type": "rollback_deployment", "params": WORKLOAD}]}


def rule(name, alertname, actions, **extra):
    return {"name": name, "match": [f'alertname="{alertname}"'], "actions": actions, **extra}


def pod_alert(h, pod, alertname="InferenceEndpointDown"):
    return body(alert({"alertname": alertname, "namespace": h.namespace, "pod": pod}))


def audit(h, inc_id):
    return h.incident(inc_id)["audit"]


def wait_audit(h, event, timeout=40):
    def seen():
        [inc] = h.incidents()
        d = h.incident(inc["id"])
        return d if any(a["event"] == event for a in d["audit"]) else None
    return wait_until(seen, timeout, what=f"audit {event}")


def _events(h, name):
    evs = h.core.list_namespaced_event("default", field_selector=f"involvedObject.name={name}").items
    return {e.reason for e in evs}


# ---- escalation passes the rails ------------------------------------------------------------------

def test_global_pause_holds_escalation_until_the_resume(remediator):
    h = remediator(nodes=2, policy={"rules": [rule(
        "ladder", "InferenceEndpointDown", [{"type": "restart_pod", "params": NS_POD}],
        verify={"alert_resolved": True, "deadline": "4s", "interval": "500ms"}, escalate=LADDER)]})
    h.deploy("llm", 2)
    h.post(pod_alert(h, h.running("llm")[0].metadata.name))
    wait_until(lambda: (i := h.incidents()) and any(a["state"] == "succeeded" for a in h.incident(i[0]["id"])[
        "actions"]), 30, interval=0.05, what="restart_pod done")
    assert h.http.post("/api/pause", json={"paused": True}, headers=h.headers).status_code == 200
    d = wait_audit(h, "escalation:wait")
    assert [a["type"] for a in d["actions"]] == ["restart_pod"], "no escalation step ran while paused"
    [held] = [a for a in d["audit"] if a["event"] == "escalation:wait"]  # recorded once, however often retried
    assert held["detail"]["reason"] == "paused"
    assert any(line.startswith("paused: wait") for line in held["detail"]["trace"])
    assert h.metrics.blocked.labels("paused")._value.get() >= 1
    assert h.metrics.escalations.labels("rollout_restart")._value.get() == 0
    assert h.http.post("/api/pause", json={"paused": False}, headers=h.headers).status_code == 200
    wait_until(lambda: h.metrics.escalations.labels("rollout_restart")._value.get() >= 1, 60,
               what="the held escalation step taken after the resume")


def test_prometheus_down_during_verify_never_escalates(remediator):
    dead = f"http://127.0.0.1:{free_port()}"
    h = remediator(nodes=2, overrides={"prometheus": {"url": dead}}, policy={"rules": [rule(
        "ladder", "InferenceEndpointDown", [{"type": "restart_pod", "params": NS_POD}],
        verify={"query": "up == 1", "deadline": "2s", "interval": "500ms"}, escalate=LADDER)]})
    h.deploy("llm", 2)
    h.post(pod_alert(h, h.running("llm")[0].metadata.name))
    d = wait_audit(h, "escalation_withheld")
    assert d["verification"] == "unverifiable"
    assert [a["type"] for a in d["actions"]] == ["restart_pod"], "no escalation on no data"
    assert h.metrics.verifications.labels("restart_pod", "unverifiable")._value.get() == 1
    assert h.metrics.blocked.labels("unverifiable")._value.get() == 1


# ---- availability before pod actions -----------------------------------------------------------

def test_restart_pod_holds_back_on_the_only_replica(remediator):
    h = remediator(nodes=1, policy={"rules": [rule("restart", "InferenceEndpointDown",
                                                   [{"type": "restart_pod", "params": NS_POD}])]})
    h.deploy("llm", 1)
    [pod] = h.running("llm")
    h.post(pod_alert(h, pod.metadata.name))
    [inc] = h.wait_status("waiting")  # held back, not dropped
    assert inc["reason"] == "availability" and f"Deployment/{h.namespace}/llm" in inc["detail"]
    assert "0 other Ready of 1" in inc["detail"]
    assert [p.metadata.uid for p in h.running("llm")] == [pod.metadata.uid]
    assert h.metrics.blocked.labels("availability")._value.get() == 1


def test_restart_pod_holds_back_on_the_only_running_pod_of_three(remediator):
    h = remediator(nodes=1, policy={"rules": [rule("restart", "InferenceEndpointDown",
                                                   [{"type": "restart_pod", "params": NS_POD}])]})
    spec = {"containers": [{"name": "app", "image": "example.invalid/llm:1",
                            "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
            "nodeSelector": {"vigil.io/pool": h.pool}, "terminationGracePeriodSeconds": 0}
    client.AppsV1Api(h.api).create_namespaced_deployment(h.namespace, {
        "metadata": {"name": "llm"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "llm"}},
                                              "template": {"metadata": {"labels": {"app": "llm"}}, "spec": spec}}})
    [pod] = h.wait_running("llm", 1)  # one node of 8 GPUs: the other two stay Pending
    h.post(pod_alert(h, pod.metadata.name))
    [inc] = h.wait_status("waiting")  # held back, not dropped
    assert inc["reason"] == "availability" and "0 other Ready of 3" in inc["detail"]
    assert [p.metadata.uid for p in h.running("llm")] == [pod.metadata.uid]


def test_quarantine_holds_back_rather_than_empty_a_service(remediator):
    h = remediator(nodes=1, policy={"rules": [rule("quarantine", "InferenceEndpointDown",
                                                   [{"type": "quarantine_pod", "params": NS_POD}])]})
    h.deploy("llm", 1)
    h.core.create_namespaced_service(h.namespace, {"metadata": {"name": "llm"}, "spec": {
        "selector": {"app": "llm"}, "ports": [{"port": 80}]}})
    [pod] = h.running("llm")
    h.post(pod_alert(h, pod.metadata.name))
    [inc] = h.wait_status("waiting")  # held back, not dropped
    assert inc["reason"] == "availability" and f"Service {h.namespace}/llm" in inc["detail"]
    assert "0 ready endpoints of 1" in inc["detail"]
    assert (h.core.read_namespaced_pod(pod.metadata.name, h.namespace).metadata.labels or {}).get("app") == "llm"


def test_restart_pod_goes_through_eviction_and_a_pdb_blocks_it(remediator):
    h = remediator(nodes=2, policy={"rules": [rule("restart", "InferenceEndpointDown",
                                                   [{"type": "restart_pod", "params": NS_POD}])]})
    h.deploy("llm", 2)
    policy = client.PolicyV1Api(h.api)
    policy.create_namespaced_pod_disruption_budget(h.namespace, {
        "metadata": {"name": "llm-pdb"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "llm"}}}})
    wait_until(lambda: (policy.read_namespaced_pod_disruption_budget("llm-pdb", h.namespace).status
                        .observed_generation or 0) >= 1, 30, what="PDB status")
    uids = sorted(p.metadata.uid for p in h.running("llm"))
    h.post(pod_alert(h, h.running("llm")[0].metadata.name))
    [inc] = h.wait_status("blocked")
    d = h.incident(inc["id"])
    assert d["actions"][0]["state"] == "blocked" and d["actions"][0]["result"]["reason"] == "pdb"
    assert f"{h.namespace}/llm-pdb" in d["actions"][0]["result"]["detail"]
    assert sorted(p.metadata.uid for p in h.running("llm")) == uids, "the PDB held"
    assert h.metrics.blocked.labels("pdb")._value.get() == 1


# ---- ownership ----------------------------------------------------------------------------------

def test_operator_uncordon_and_recordon_is_never_undone(remediator):
    h = remediator(nodes=2, policy={"rules": [rule(
        "gpu", "GpuXidCritical", [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
        on_resolved={"uncordon": True})]})
    node = h.nodes[0]
    payload = h.xid(node)
    h.post(payload)
    h.wait_status("succeeded")
    h.core.patch_node(node, {"spec": {"unschedulable": False}})  # the operator uncordons ...
    h.core.patch_node(node, {"spec": {"unschedulable": True}})  # ... and cordons for their own maintenance
    assert h.core.read_node(node).metadata.annotations.get("vigil.io/cordoned-by") == "vigil"  # stale marker
    payload["alerts"][0]["status"] = "resolved"
    h.post(payload)
    wait_until(lambda: h.incidents()[0]["after_resolve"], 30, what="after_resolve")
    assert h.unschedulable(node), "the operator's cordon stays"
    [inc] = h.incidents()
    events = [a for a in audit(h, inc["id"]) if a["event"] == "claim_dropped"]
    assert events and events[0]["detail"]["node"] == node
    assert "VigilClaimDropped" in _events(h, node)
    assert h.metrics.blocked.labels("foreign_cordon")._value.get() == 1


# ---- the budget counts every unavailable node ------------------------------------------------------

def test_not_ready_nodes_count_against_the_budget(remediator):
    h = remediator(nodes=4, overrides={"safety": {"budget": {"max_nodes": 2, "min_nodes": 1}}})
    for i in range(2):  # no kwok annotation: nothing makes these Ready
        spec = gpu_node(f"{h.pool}-sick{i}", pool=h.pool)
        spec["metadata"]["annotations"] = {}
        h.core.create_node(spec)
    h.post(h.xid(h.nodes[0]))
    [inc] = h.wait_status("waiting")  # held back, not dropped
    assert inc["reason"] == "budget" and "NotReady" in inc["detail"] and f"{h.pool}-sick0" in inc["detail"]
    assert "3 unavailable nodes would exceed" in inc["detail"]
    assert any("3 of 6 managed nodes unavailable" in line for line in h.incident(inc["id"])["trace"])
    assert not h.unschedulable(h.nodes[0])


# ---- namespace pause, resolve during execution, node_selector --------------------------------------

def test_drain_respects_a_paused_namespace(remediator):
    h = remediator(nodes=2, policy={"rules": [rule(
        "drain", "GpuXidCritical", [{"type": "drain_node", "params": {"node": "{{ labels.node }}"}}])]})
    victim = h.nodes[0]
    h.deploy("llm", 2, nodeSelector={"kubernetes.io/hostname": victim})
    h.core.patch_namespace(h.namespace, {"metadata": {"annotations": {"vigil.io/remediation": "disabled"}}})
    h.post(h.xid(victim))
    [inc] = h.wait_status("waiting")  # held back, not dropped
    assert inc["reason"] == "paused" and h.namespace in inc["detail"]
    assert len(h.running("llm")) == 2 and not h.unschedulable(victim)


def test_resolve_during_execution_keeps_what_ran_and_runs_on_resolved(remediator):
    h = remediator(nodes=2, policy={"rules": [rule(
        "gpu", "GpuXidCritical", [
            {"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
            {"type": "drain_node", "params": {"node": "{{ labels.node }}", "timeout": "6s"}},
            {"type": "taint_node", "params": {"node": "{{ labels.node }}", "key": "vigil.io/late"}}],
        on_resolved={"uncordon": True})]})
    victim = h.nodes[0]
    h.deploy("pinned", 2, nodeSelector={"kubernetes.io/hostname": victim})
    policy = client.PolicyV1Api(h.api)
    policy.create_namespaced_pod_disruption_budget(h.namespace, {
        "metadata": {"name": "pinned-pdb"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "pinned"}}}})
    wait_until(lambda: (policy.read_namespaced_pod_disruption_budget("pinned-pdb", h.namespace).status
                        .observed_generation or 0) >= 1, 30, what="PDB status")
    payload = h.xid(victim)
    h.post(payload)
    wait_until(lambda: (i := h.incidents()) and [a["state"] for a in h.incident(i[0]["id"])["actions"]][:2] == [
        "succeeded", "running"], 30, interval=0.05, what="the drain running")
    payload["alerts"][0]["status"] = "resolved"
    h.post(payload)
    wait_until(lambda: h.incidents()[0]["after_resolve"], 40, what="after_resolve")
    [inc] = h.incidents()
    assert inc["status"] != "cancelled", "the node was cordoned: something changed"
    states = [a["state"] for a in h.incident(inc["id"])["actions"]]
    assert states == ["succeeded", "blocked", "cancelled"]
    assert "uncordon" in inc["after_resolve"] and not h.unschedulable(victim), "on_resolved undid the cordon"
    assert not any(t.key == "vigil.io/late" for t in h.core.read_node(victim).spec.taints or [])


def test_a_node_outside_node_selector_is_named_so(remediator):
    h = remediator(nodes=1)
    other = f"{h.pool}-elsewhere"
    h.core.create_node(gpu_node(other, pool=f"{h.pool}-other"))
    h.post(body(alert(xid_labels(other))))
    [inc] = h.wait_status("blocked")
    assert inc["reason"] == "outside_node_selector" and "outside node_selector" in inc["detail"]
    assert not h.unschedulable(other)


def test_restore_on_resolve_never_overwrites_someone_elses_change(remediator):
    h = remediator(nodes=1, policy={"rules": [rule("failover", "InferenceServiceDegraded", [
        {"type": "failover_service", "params": {"namespace": "{{ labels.namespace }}", "service": "llm",
                                                "selector": {"app": "llm", "pool": "standby"},
                                                "restore_on_resolve": True}}])]})
    h.core.create_namespaced_service(h.namespace, {"metadata": {"name": "llm"}, "spec": {
        "selector": {"app": "llm", "pool": "primary"}, "ports": [{"port": 80}]}})
    payload = body(alert({"alertname": "InferenceServiceDegraded", "namespace": h.namespace, "service": "llm"}))
    h.post(payload)
    h.wait_status("succeeded")
    theirs = {"app": "llm", "pool": "canary"}  # an operator's own switch; Vigil's marker annotation survives it
    h.core.patch_namespaced_service("llm", h.namespace, {"spec": {"selector": {"pool": "canary"}}})
    payload["alerts"][0]["status"] = "resolved"
    h.post(payload)
    wait_until(lambda: h.incidents()[0]["after_resolve"], 30, what="after_resolve")
    [inc] = h.incidents()
    assert h.core.read_namespaced_service("llm", h.namespace).spec.selector == theirs
    assert "not_owner" in inc["after_resolve"]
    assert any(a["event"] == "restore_blocked" and a["detail"]["reason"] == "not_owner" for a in audit(h, inc["id"]))
    assert h.metrics.blocked.labels("not_owner")._value.get() == 1
