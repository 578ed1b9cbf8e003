"""Scope on the real local cluster: alerts naming a kube-system pod or route, or a pod on a node
outside node_selector, change nothing and are blocked `outside_scope` naming the scope rule; the
last Ready replica of a Deployment without a Service is not quarantined."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.k8s.controlplane import add_gpu_nodes, wait_until

from .payloads import alert, body

pytestmark = [pytest.mark.k8s, pytest.mark.integration]
POD = {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}
POLICY = {"rules": [
    {"name": "restart", "match": ['alertname="PodDown"'], "actions": [{"type": "restart_pod", "params": POD}]},
    {"name": "quarantine", "match": ['alertname="PodBad"'],
     "actions": [{"type": "quarantine_pod", "params": {**POD, "label": "app", "value": "quarantined"}}]},
    {"name": "shift", "match": ['alertname="RouteSlow"'], "actions": [{"type": "shift_traffic", "params": {
        "namespace": "{{ labels.namespace }}", "route": "llm", "from": "llm-zone-a", "to": "llm-zone-b"}}]},
]}


def _deploy(api, ns: str, name: str, pool: str, replicas: int = 1) -> list[str]:
    labels = {"app": name}
    client.AppsV1Api(api).create_namespaced_deployment(ns, {"metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
        "spec": {"nodeSelector": {"vigil.io/pool": pool}, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "example.invalid/x"}]}}}})
    core = client.CoreV1Api(api)

    def running():
        pods = core.list_namespaced_pod(ns, label_selector=f"app={name}").items
        ready = [p.metadata.name for p in pods if p.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        return ready if len(ready) == replicas else None
    return wait_until(running, 90, what=f"{replicas} Ready pods of {ns}/{name}")


def test_out_of_scope_targets_change_nothing_and_name_the_scope_rule(remediator, unique):
    h = remediator(nodes=2, policy=POLICY)
    outside = f"outside-{unique}"
    add_gpu_nodes(h.api, [f"{outside}-n0"], pool=outside)  # a node outside node_selector
    [system_pod] = _deploy(h.api, "kube-system", f"sys-{unique}", h.pool)
    [far_pod] = _deploy(h.api, h.namespace, "far", outside)
    [last_pod] = _deploy(h.api, h.namespace, "single", h.pool)
    alerts = [alert({"alertname": "PodDown", "namespace": "kube-system", "pod": system_pod}),
              alert({"alertname": "RouteSlow", "namespace": "kube-system"}),
              alert({"alertname": "PodDown", "namespace": h.namespace, "pod": far_pod}),
              alert({"alertname": "PodBad", "namespace": h.namespace, "pod": last_pod})]
    for a in alerts:
        assert h.post(body(a)).status_code == 200
    items = h.wait_status("blocked", "waiting", count=4)  # out of scope: refused; the last replica: held back
    by = {(i["alertname"], i["labels"].get("namespace"), i["labels"].get("pod", "")): i for i in items}
    sys_inc = by[("PodDown", "kube-system", system_pod)]
    assert sys_inc["reason"] == "outside_scope"
    assert "namespace kube-system is a system namespace, excluded by default" in sys_inc["detail"]
    route = by[("RouteSlow", "kube-system", "")]
    assert route["reason"] == "outside_scope" and "kube-system" in route["detail"]
    far = by[("PodDown", h.namespace, far_pod)]
    assert far["reason"] == "outside_scope"
    assert f"runs on node {outside}-n0, outside kubernetes.node_selector" in far["detail"]
    last = by[("PodBad", h.namespace, last_pod)]
    assert last["status"] == "waiting" and last["reason"] == "availability" and "quarantining" in last["detail"], last
    assert all(by[k]["status"] == "blocked" for k in by if k != ("PodBad", h.namespace, last_pod))
    for i in items:
        assert all(a["state"] == "blocked" for a in h.incident(i["id"])["actions"])  # nothing ran
    core = h.core
    assert core.read_namespaced_pod(system_pod, "kube-system").metadata.deletion_timestamp is None
    assert core.read_namespaced_pod(far_pod, h.namespace).metadata.deletion_timestamp is None
    assert core.read_namespaced_pod(last_pod, h.namespace).metadata.labels["app"] == "single"
    client.AppsV1Api(h.api).delete_namespaced_deployment(f"sys-{unique}", "kube-system")
