"""Adversarial: the uncordon on resolve passes the rails, then (`on_resolved.validate`) a
validation Job runs on the still-cordoned node, for up to its timeout, and then the uncordon ran
without looking again. An operator who paused the node (vigil.io/remediation=disabled) or all of
remediation while the Job ran still saw the node put back into service. The rails are asked again
after the validation, right before the uncordon. Real remediator (webhook, ledger, engine) on the
local cluster; the test hook only marks the moment the validation starts."""

from __future__ import annotations

import pytest

from remediator.domain.models import PAUSE_ANNOTATION
from tests.k8s.controlplane import wait_until

from .repair_env import install_crds

pytestmark = pytest.mark.k8s
FAST_JOBS = {"reset_gpu": {"timeout": "30s"}, "reboot": {"job": {"timeout": "30s"}},
             "validate": {"job": {"timeout": "30s"}}, "pods_gone_timeout": "5s"}
POLICY = {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
                     "on_resolved": {"uncordon": True, "validate": True}}]}


def _during_validation(h, what):
    """Runs `what` when the first validation of the node starts (as an operator would, meanwhile)."""
    validate = h.engine.followup._validate
    seen = []

    def hooked(incident, node):
        seen.append(node)
        if len(seen) == 1:
            what()
        return validate(incident, node)

    h.engine.followup._validate = hooked
    return seen


def _cordoned_then_resolved(h):
    node = h.nodes[0]
    payload = h.xid(node)
    assert h.post(payload).status_code == 200
    h.wait_status("succeeded")
    assert h.unschedulable(node)
    payload["alerts"][0]["status"] = "resolved"
    assert h.post(payload).status_code == 200
    return node


def test_a_node_paused_during_validation_stays_cordoned_until_the_pause_is_lifted(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=POLICY, overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    seen = _during_validation(h, lambda: h.core.patch_node(
        node, {"metadata": {"annotations": {PAUSE_ANNOTATION: "disabled"}}}))
    gate, gated = h.engine.followup._gate, []

    def counted(step):  # a held uncordon (wait) raises to retry on the next tick: count both ways
        try:
            decision = gate(step)
        except Exception as exc:
            if seen:
                gated.append("paused" if "paused" in str(exc) or "disabled" in str(exc) else str(exc))
            raise
        if seen:
            gated.append(decision.reason)
        return decision
    h.engine.followup._gate = counted
    _cordoned_then_resolved(h)
    wait_until(lambda: gated.count("paused") >= 3, 90, what="the uncordon held by the node's pause, tried again")
    assert seen == [node], "the validation ran"
    [inc] = h.incidents()
    assert h.unschedulable(node) and not inc["after_resolve"], "paused: the node stays out, the uncordon waits"
    h.core.patch_node(node, {"metadata": {"annotations": {PAUSE_ANNOTATION: None}}})
    [inc] = wait_until(lambda: [i for i in h.incidents() if i["after_resolve"]], 90, what="after_resolve")
    assert not h.unschedulable(node), "the pause lifted: the node comes back (validated again first)"
    assert "uncordon" in inc["after_resolve"], inc["after_resolve"]


def test_a_global_pause_during_validation_holds_the_uncordon(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=POLICY, overrides={"repair": FAST_JOBS})
    seen = _during_validation(h, lambda: h.http.post("/api/pause", json={"paused": True, "reason": "maintenance"},
                                                      headers=h.headers))
    node = _cordoned_then_resolved(h)
    [inc] = h.incidents()

    def held_or_uncordoned():
        events = [a["event"] for a in h.incident(inc["id"])["audit"]]
        return ("uncordon_deferred" in events or not h.unschedulable(node)) and events
    events = wait_until(held_or_uncordoned, 90, what="the uncordon deferred, or run")
    assert seen == [node] and "uncordon_deferred" in events, events
    assert h.unschedulable(node), "paused: the uncordon waits"
    assert not h.incidents()[0]["after_resolve"], "tried again once remediation resumes"
    assert h.http.post("/api/pause", json={"paused": False}, headers=h.headers).status_code == 200
    [inc] = wait_until(lambda: [i for i in h.incidents() if i["after_resolve"]], 90, what="after_resolve")
    assert not h.unschedulable(node), inc["after_resolve"]
    assert seen == [node, node], "validated again before the uncordon"
