"""Service actions, guard, verify, escalation and restore-on-resolve, against the real local
control plane and a real Prometheus (which evaluates the PromQL of guards and verifications)."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.k8s.controlplane import free_port, wait_until
from tests.stack import Stack

from .payloads import alert, body

pytestmark = [pytest.mark.k8s, pytest.mark.integration]
HOLDS, FAILS = "vector(1)", "vector(1) == 2"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("prom"))
    url = stack.start_prometheus([], scrape_interval="1s", extra_rule_files={})
    yield url
    stack.stop()


def rule(name, alertname, actions, **extra):
    return {"name": name, "match": [f'alertname="{alertname}"'], "actions": actions, **extra}


def svc_alert(h, alertname, **labels):
    return body(alert({"alertname": alertname, "namespace": h.namespace, "service": "llm", **labels}))


def apps(h):
    return client.AppsV1Api(h.api)


def test_service_down_on_pod_x_restarts_exactly_pod_x(remediator):
    h = remediator(nodes=2, policy={"rules": [rule("restart", "InferenceEndpointDown", [
        {"type": "restart_pod", "params": {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}}])]})
    h.deploy("llm", 3)
    pods = {p.metadata.name for p in h.running("llm")}
    victim = sorted(pods)[0]
    h.post(svc_alert(h, "InferenceEndpointDown", pod=victim))
    [inc] = h.wait_status("succeeded")
    after = {p.metadata.name for p in h.wait_running("llm", 3)}
    assert victim not in after and pods - {victim} <= after, "only pod X was restarted; its controller replaced it"
    assert h.incident(inc["id"])["actions"][0]["target"] == f"{h.namespace}/{victim}"


def test_bare_pods_are_refused(remediator):
    h = remediator(nodes=1, policy={"rules": [rule("restart", "InferenceEndpointDown", [
        {"type": "restart_pod", "params": {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}}])]})
    h.core.create_namespaced_pod(h.namespace, {"metadata": {"name": "bare"}, "spec": {
        "nodeSelector": {"vigil.io/pool": h.pool}, "containers": [{"name": "c", "image": "example.invalid/x"}]}})
    wait_until(lambda: h.core.read_namespaced_pod("bare", h.namespace).status.phase == "Running", 60, what="bare pod")
    h.post(svc_alert(h, "InferenceEndpointDown", pod="bare"))
    [inc] = h.wait_status("blocked")
    assert inc["reason"] == "bare_pod" and h.core.read_namespaced_pod("bare", h.namespace)


def test_rollout_restart_rollback_and_scale(remediator):
    ws = {"namespace": "{{ labels.namespace }}", "name": "llm"}
    h = remediator(nodes=2, policy={"rules": [
        rule("restart", "LlmStale", [{"type": "rollout_restart", "params": ws}]),
        rule("undo", "LlmBadRelease", [{"type": "rollback_deployment", "params": ws}]),
        rule("scale", "LlmOverloaded", [{"type": "scale_deployment", "params": {**ws, "step": 2, "max": 4}}]),
    ]})
    h.deploy("llm", 3)
    a = apps(h)
    a.patch_namespaced_deployment("llm", h.namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "example.invalid/llm:2"}]}}}})
    wait_until(lambda: len(a.list_namespaced_replica_set(h.namespace).items) == 2, 60, what="revision 2")
    h.post(svc_alert(h, "LlmBadRelease"))
    h.wait_status("succeeded")
    dep = a.read_namespaced_deployment("llm", h.namespace)
    assert dep.spec.template.spec.containers[0].image == "example.invalid/llm:1", "back to the previous template"
    h.post(svc_alert(h, "LlmStale"))
    h.wait_status("succeeded", count=2)
    dep = a.read_namespaced_deployment("llm", h.namespace)
    assert "kubectl.kubernetes.io/restartedAt" in dep.spec.template.metadata.annotations
    h.post(svc_alert(h, "LlmOverloaded"))
    h.wait_status("succeeded", count=3)
    assert a.read_namespaced_deployment("llm", h.namespace).spec.replicas == 4, "3 + 2, bounded by max 4"


def test_quarantine_takes_the_pod_out_of_the_endpointslice_and_keeps_it(remediator):
    h = remediator(nodes=2, policy={"rules": [rule("quarantine", "InferenceEndpointDown", [
        {"type": "quarantine_pod", "params": {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}",
                                              "label": "app", "value": "llm-quarantined"}}])]})
    h.deploy("llm", 2)
    h.core.create_namespaced_service(h.namespace, {"metadata": {"name": "llm"}, "spec": {
        "selector": {"app": "llm"}, "ports": [{"port": 80, "targetPort": 8000}]}})
    disc = client.DiscoveryV1Api(h.api)

    def endpoint_pods():
        slices = disc.list_namespaced_endpoint_slice(h.namespace, label_selector="kubernetes.io/service-name=llm")
        return {e.target_ref.name for s in slices.items for e in s.endpoints or [] if e.target_ref}

    wait_until(lambda: len(endpoint_pods()) == 2, 60, what="endpoints")
    victim = sorted(endpoint_pods())[0]
    h.post(svc_alert(h, "InferenceEndpointDown", pod=victim))
    [inc] = h.wait_status("succeeded")
    wait_until(lambda: victim not in endpoint_pods() and len(endpoint_pods()) == 2, 60,
               what="victim out of the slice, a replacement in")
    kept = h.core.read_namespaced_pod(victim, h.namespace)
    assert kept.metadata.labels["app"] == "llm-quarantined" and kept.status.phase == "Running"
    assert "label pod" in h.incident(inc["id"])["actions"][0]["result"]["undo"]


ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "llm"},
         "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
             {"name": "llm-zone-a", "port": 80, "weight": 50}, {"name": "llm-zone-b", "port": 80, "weight": 50}]}]}}


def _weights(h):
    r = client.CustomObjectsApi(h.api).get_namespaced_custom_object("gateway.networking.k8s.io", "v1", h.namespace,
                                                                     "httproutes", "llm")
    return {b["name"]: b["weight"] for b in r["spec"]["rules"][0]["backendRefs"]}


def test_latency_burn_in_zone_a_shifts_weights_to_zone_b_and_restores(remediator, prometheus):
    h = remediator(nodes=1, overrides={"prometheus": {"url": prometheus}}, policy={"rules": [rule(
        "shift", "InferenceLatencyBudgetBurn", [{"type": "shift_traffic", "params": {
            "namespace": "{{ labels.namespace }}", "route": "llm", "from": "llm-{{ labels.zone }}",
            "to": "llm-zone-b", "step": 50, "restore_on_resolve": True}}], guard={"query": HOLDS})]})
    client.CustomObjectsApi(h.api).create_namespaced_custom_object("gateway.networking.k8s.io", "v1", h.namespace,
                                                                   "httproutes", ROUTE)
    labels = {"alertname": "InferenceLatencyBudgetBurn", "namespace": h.namespace, "service": "llm",
              "zone": "zone-a"}
    payload = body(alert(labels))
    h.post(payload)
    [inc] = h.wait_status("succeeded")
    assert _weights(h) == {"llm-zone-a": 0, "llm-zone-b": 100}
    payload["alerts"][0]["status"] = "resolved"
    h.post(payload)
    wait_until(lambda: _weights(h) == {"llm-zone-a": 50, "llm-zone-b": 50}, 30, what="weights restored")
    # the restore is recorded after the patch lands: wait for the record, not for the first read after the patch
    wait_until(lambda: h.incident(inc["id"])["after_resolve"], 30, what="after_resolve recorded")
    assert "restored" in h.incident(inc["id"])["after_resolve"]


def test_failover_switches_the_selector_and_back(remediator):
    h = remediator(nodes=1, policy={"rules": [rule("failover", "InferenceServiceDegraded", [
        {"type": "failover_service", "params": {"namespace": "{{ labels.namespace }}", "service": "llm",
                                                "selector": {"app": "llm", "pool": "standby"},
                                                "restore_on_resolve": True}}])]})
    h.core.create_namespaced_service(h.namespace, {"metadata": {"name": "llm"}, "spec": {
        "selector": {"app": "llm", "pool": "primary"}, "ports": [{"port": 80}]}})
    payload = svc_alert(h, "InferenceServiceDegraded")
    h.post(payload)
    h.wait_status("succeeded")
    assert h.core.read_namespaced_service("llm", h.namespace).spec.selector == {"app": "llm", "pool": "standby"}
    payload["alerts"][0]["status"] = "resolved"
    h.post(payload)
    wait_until(lambda: h.core.read_namespaced_service("llm", h.namespace).spec.selector ==
               {"app": "llm", "pool": "primary"}, 30, what="selector restored")


def test_a_guard_that_fails_blocks(remediator, prometheus):
    h = remediator(nodes=1, overrides={"prometheus": {"url": prometheus}}, policy={"rules": [rule(
        "guarded", "LlmOverloaded", [{"type": "scale_deployment", "params": {"namespace": "{{ labels.namespace }}",
                                                                            "name": "llm", "step": 1}}],
        guard={"query": FAILS})]})
    h.post(svc_alert(h, "LlmOverloaded"))
    [inc] = h.wait_status("waiting")  # held back until the guard holds
    assert inc["reason"] == "guard" and FAILS in inc["detail"]


def test_prometheus_unreachable_fails_closed_with_the_reason(remediator):
    dead = f"http://127.0.0.1:{free_port()}"
    h = remediator(nodes=1, overrides={"prometheus": {"url": dead}}, policy={"rules": [rule(
        "guarded", "LlmOverloaded", [{"type": "scale_deployment", "params": {"namespace": "{{ labels.namespace }}",
                                                                            "name": "llm", "step": 1}}],
        guard={"query": HOLDS})]})
    h.post(svc_alert(h, "LlmOverloaded"))
    [inc] = h.wait_status("waiting")  # unknown is not failure: it waits, it does not act blind
    assert inc["reason"] == "guard_unavailable" and "did not answer" in inc["detail"]


def test_a_failed_verify_escalates_and_the_ladder_stops_at_its_cap(remediator, prometheus):
    ns_pod = {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}
    h = remediator(nodes=2, overrides={"prometheus": {"url": prometheus}}, policy={"rules": [rule(
        "ladder", "InferenceEndpointDown", [{"type": "restart_pod", "params": ns_pod}],
        verify={"query": FAILS, "deadline": "1s", "interval": "500ms"},
        escalate={"steps": [{"type": "rollout_restart", "params": {"namespace": "{{ labels.namespace }}",
                                                                   "name": "llm"}},
                            {"type": "rollback_deployment", "params": {"namespace": "{{ labels.namespace }}",
                                                                       "name": "llm"}}],
                  "max_steps": 1})]})
    h.deploy("llm", 2)
    victim = h.running("llm")[0].metadata.name
    h.post(svc_alert(h, "InferenceEndpointDown", pod=victim))

    def settled():
        inc = h.incidents()[0]
        d = h.incident(inc["id"])
        return d if any(a["event"] == "escalation_exhausted" for a in d["audit"]) else None

    d = wait_until(settled, 60, what="the ladder to run out")
    assert [a["type"] for a in d["actions"]] == ["restart_pod", "rollout_restart"], "one step: max_steps 1"
    assert d["verification"] == "not_verified"
    assert [a["event"] for a in d["audit"]].count("escalate") == 1
    assert h.metrics.verifications.labels("rollout_restart", "failed")._value.get() == 1
    assert h.metrics.escalations.labels("rollout_restart")._value.get() == 1


def test_a_verify_that_holds_does_not_escalate(remediator, prometheus):
    h = remediator(nodes=2, overrides={"prometheus": {"url": prometheus}}, policy={"rules": [rule(
        "ok", "InferenceEndpointDown", [{"type": "restart_pod", "params": {
            "namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}}],
        verify={"query": HOLDS, "deadline": "5s", "interval": "500ms"},
        escalate={"steps": [{"type": "rollout_restart", "params": {"namespace": "{{ labels.namespace }}",
                                                                   "name": "llm"}}]})]})
    h.deploy("llm", 2)
    h.post(svc_alert(h, "InferenceEndpointDown", pod=h.running("llm")[0].metadata.name))
    d = wait_until(lambda: (x := h.incident(h.incidents()[0]["id"]))["verification"] == "verified" and x, 30,
                   what="verified")
    assert [a["type"] for a in d["actions"]] == ["restart_pod"]


def test_uncordon_on_resolve_only_after_the_recovery_check(remediator, prometheus):
    h = remediator(nodes=2, overrides={"prometheus": {"url": prometheus}}, policy={"rules": [rule(
        "gpu", "GpuXidCritical", [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
        on_resolved={"uncordon": True, "verify": {"query": HOLDS, "deadline": "5s"}})]})
    payload = h.xid(h.nodes[0])
    h.post(payload)
    h.wait_status("succeeded")
    assert h.unschedulable(h.nodes[0])
    payload["alerts"][0]["status"] = "resolved"
    h.post(payload)
    wait_until(lambda: not h.unschedulable(h.nodes[0]), 30, what="uncordon after recovery")
    wait_until(lambda: h.incidents()[0]["after_resolve"], 30, what="after_resolve recorded")
    assert "uncordon" in h.incidents()[0]["after_resolve"]
