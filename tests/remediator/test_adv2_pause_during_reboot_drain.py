"""Adversarial: reboot_node drains the node first (up to drain_timeout, 300 s by default) and then
starts the reboot Job in the same action. The rails are rechecked right before each planned action,
not between the drain and the reboot inside one, so a node an operator paused
(vigil.io/remediation=disabled) while its drain ran was still rebooted; the node's pause is now read
again after the drain, and so is the global pause.
Real remediator on the local cluster; the test hook only marks the moment the drain starts (the
real drain then runs)."""

from __future__ import annotations

import pytest
from kubernetes import client

from remediator.domain.models import PAUSE_ANNOTATION

from .repair_env import install_crds

pytestmark = pytest.mark.k8s
FAST_JOBS = {"reset_gpu": {"timeout": "30s"}, "reboot": {"job": {"timeout": "10s"}},
             "validate": {"job": {"timeout": "30s"}}, "pods_gone_timeout": "5s"}
POLICY = {"rules": [{"name": "reboot", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "reboot_node", "params": {"node": "{{ labels.node }}"}}]}]}


def _pause_during_drain(h, pause):
    drain = h.engine.kube.drain

    def paused_meanwhile(*args, **kwargs):
        pause()
        return drain(*args, **kwargs)

    h.engine.kube.drain = paused_meanwhile


def _reboot_jobs(h, node):
    return [j.metadata.name for j in client.BatchV1Api(h.api).list_namespaced_job("vigil-repair").items
            if j.spec.template.spec.node_name == node and "reboot" in j.metadata.name]


def test_a_node_paused_during_the_reboots_drain_is_not_rebooted(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=POLICY, overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    paused = {"metadata": {"annotations": {PAUSE_ANNOTATION: "disabled"}}}
    _pause_during_drain(h, lambda: h.core.patch_node(node, paused))
    assert h.post(h.xid(node)).status_code == 200
    [inc] = h.wait_status("succeeded", "failed", "blocked", timeout=90)
    assert _reboot_jobs(h, node) == [], f"paused during the drain, yet rebooted ({inc['status']}: {inc['detail']})"
    assert inc["status"] == "blocked" and inc["reason"] == "paused", inc


def test_a_global_pause_during_the_reboots_drain_holds_the_reboot(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=POLICY, overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    _pause_during_drain(h, lambda: h.http.post("/api/pause", json={"paused": True, "reason": "x"}, headers=h.headers))
    assert h.post(h.xid(node)).status_code == 200
    [inc] = h.wait_status("succeeded", "failed", "blocked", timeout=90)
    assert _reboot_jobs(h, node) == [], f"paused during the drain, yet rebooted ({inc['status']}: {inc['detail']})"
