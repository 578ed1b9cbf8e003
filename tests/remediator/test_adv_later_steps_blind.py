"""Adversarial: a later step (escalation, on_failure, uncordon, restore) planned while the cluster
view is unavailable (the cache is stale past 180 s, or the LIST failed on an API server blip that
the action's own retries then ride out). First actions defer in that case; later steps passed the
target, ownership, availability, node-pause and budget rails *unchecked* ("cluster view unavailable;
node budget not checked") and acted. A step that changes the cluster must not act blind: it defers
with reason cluster_unavailable. Pure core, real config parser."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.config import parse_config
from remediator.domain.decide import plan_escalation, plan_on_failure, plan_step
from remediator.domain.models import (
    FIELD_MANAGER,
    INCIDENT_ANNOTATION,
    ClusterView,
    Incident,
    NodeView,
    PlannedAction,
    SafetyState,
)
from remediator.domain.rails import Step, World

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
NODE = {"node": "{{ labels.node }}"}
CONFIG = parse_config({"safety": {"dry_run": False, "budget": {"max_nodes": 1, "min_nodes": 1}},
                       "policy": {"rules": [{
                           "name": "ladder", "match": ['alertname="GpuXidCritical"'],
                           "actions": [{"type": "cordon_node", "params": NODE}],
                           "verify": {"alert_resolved": True},
                           "escalate": {"steps": [{"type": "drain_node", "params": NODE}]},
                           "on_failure": {"steps": [{"type": "cordon_node", "params": {"node": "n2"}}]},
                           "on_resolved": {"uncordon": True}}]}}, "adv.yaml")
[RULE] = CONFIG.rules
INCIDENT = Incident("ab12", NOW - dt.timedelta(minutes=5), {"alertname": "GpuXidCritical", "node": "n1"}, id=7)


def _world(cluster: ClusterView) -> World:
    return World(cluster, (), CONFIG.safety, SafetyState(), NOW, needs_cluster=True)  # as Engine.world() builds it


BLIND = ClusterView(available=False)
# What the blind step would not have seen: n1 paused by its annotation, n2 over the budget (n3 is out).
SEEN = ClusterView(nodes={
    "n1": NodeView("n1", managed=True, unschedulable=True, unschedulable_owner=FIELD_MANAGER,
                   annotations={"vigil.io/remediation": "disabled", INCIDENT_ANNOTATION: "7"}),
    "n2": NodeView("n2", managed=True),
    "n3": NodeView("n3", managed=True, ready=False),
})

STEPS = {
    "escalation": lambda w: plan_escalation(INCIDENT, RULE, 0, w),
    "on_failure": lambda w: plan_on_failure(INCIDENT, RULE, 0, w),
    "uncordon": lambda w: plan_step(Step("uncordon", INCIDENT, RULE, (
        PlannedAction("uncordon_node", "n1", {"node": "n1", "only_incident": "true"}),)), w),
}


@pytest.mark.parametrize("kind", STEPS)
def test_a_later_step_does_not_act_on_an_unavailable_cluster_view(kind):
    decision = STEPS[kind](_world(BLIND))
    assert decision.outcome == "defer", decision.trace
    assert decision.reason == "cluster_unavailable"
    assert not decision.actions


@pytest.mark.parametrize("kind", STEPS)
def test_with_the_view_the_same_step_is_stopped_by_a_rail(kind):
    """What the blind plan skipped: with the cluster visible a rail stops each of these steps."""
    decision = STEPS[kind](_world(SEEN))
    assert decision.outcome == "wait", decision.trace  # held back, not refused: it goes on when the rail clears
    assert decision.reason in ("paused", "budget"), decision.trace


def test_the_engine_does_not_escalate_on_a_stale_cluster_cache(k8s_api, tmp_path, unique):
    """The wiring: Engine.world() (what escalations, on_failure steps, restores and uncordons read)
    with a real API server but a cluster cache that is not synced: the escalation step (a drain of
    a node the budget has no room for) is deferred, not run, and the audit says why."""
    import json
    import os

    from kubernetes import client

    from remediator.cluster.cache import ClusterCache
    from remediator.cluster.kube import Kube
    from remediator.domain.decide import Decision
    from remediator.domain.payload import parse
    from remediator.runtime.engine import Engine
    from remediator.runtime.metrics import Metrics
    from remediator.store.ledger import SQLiteLedger
    from tests.k8s.controlplane import add_gpu_nodes

    from .payloads import alert, body, xid_labels

    pool = f"adv-{unique}"
    node = f"{pool}-n0"
    add_gpu_nodes(k8s_api.api_client(), [node], pool=pool)
    os.environ["VIGIL_ADV_TOKEN"] = "adv-token-0123456789"
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_ADV_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
        "kubernetes": {"kubeconfig": str(k8s_api.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "safety": {"budget": {"max_nodes": 1, "min_nodes": 1}},
        "policy": {"rules": [{"name": "ladder", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": NODE}],
                              "verify": {"alert_resolved": True, "deadline": "1s", "interval": "100ms"},
                              "escalate": {"steps": [{"type": "cordon_node", "params": NODE}]}}]}}, "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    kube = Kube(config.kubeconfig, node_selector=config.node_selector)
    engine = Engine(config, ledger, kube, Metrics(ledger.counts_by_status), cache=ClusterCache(kube))  # never synced
    try:
        now = dt.datetime.now(dt.UTC)
        ledger.record(parse(json.dumps(body(alert(xid_labels(node)))).encode()).alerts, now)
        [incident] = ledger.due(now)
        ledger.save_decision(incident.id, Decision("blocked", "ladder", reason="budget", detail="x"), now)
        engine.followup.verify_and_escalate(incident.id)
        inc = ledger.get_incident(incident.id)
        assert next(a for a in inc["audit"] if a["event"].startswith("escalation:"))["event"] == "escalation:defer", \
            inc["audit"]
        assert inc["actions"] == [], "an escalation step ran on an unavailable cluster view"
        assert not client.CoreV1Api(k8s_api.api_client()).read_node(node).spec.unschedulable
    finally:
        ledger.close()  # the engine was never started: nothing of it runs


def test_an_uncordon_on_resolve_waits_for_the_cluster_view_and_then_runs(k8s_api, tmp_path, unique):
    """A follow-up deferred for an unavailable view is not recorded as done (it would never be
    retried and the node would stay cordoned): it runs once the cache has synced."""
    import json
    import os

    from kubernetes import client

    from remediator.cluster.cache import ClusterCache
    from remediator.cluster.kube import Kube
    from remediator.domain.decide import Decision
    from remediator.domain.payload import parse
    from remediator.runtime.engine import Engine
    from remediator.runtime.metrics import Metrics
    from remediator.store.ledger import SQLiteLedger
    from tests.k8s.controlplane import add_gpu_nodes

    from .payloads import alert, body, xid_labels

    pool = f"adv-{unique}"
    node = f"{pool}-n0"
    add_gpu_nodes(k8s_api.api_client(), [node], pool=pool)
    os.environ["VIGIL_ADV_TOKEN"] = "adv-token-0123456789"
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_ADV_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
        "kubernetes": {"kubeconfig": str(k8s_api.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "safety": {"budget": {"max_nodes": 5, "min_nodes": 1}},
        "policy": {"rules": [{"name": "cordon", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": NODE}],
                              "on_resolved": {"uncordon": True}}]}}, "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    kube = Kube(config.kubeconfig, node_selector=config.node_selector)
    cache = ClusterCache(kube)
    engine = Engine(config, ledger, kube, Metrics(ledger.counts_by_status), cache=cache)
    core = client.CoreV1Api(k8s_api.api_client())
    try:
        firing = alert(xid_labels(node))
        now = dt.datetime.now(dt.UTC)
        ledger.record(parse(json.dumps(body(firing)).encode()).alerts, now)
        [incident] = ledger.due(now)
        [action_id] = ledger.save_decision(incident.id, Decision("act", "cordon", (
            PlannedAction("cordon_node", node, {"node": node}),)), now)
        # the cordon is admitted against a view (here a LIST: an engine without the cache); a blind admission waits
        assert engine.run_action(incident.id, action_id).state == "waiting"
        [action_id] = ledger.save_decision(incident.id, Decision("act", "cordon", (
            PlannedAction("cordon_node", node, {"node": node}),)), now)
        listing = Engine(config, ledger, kube, Metrics(ledger.counts_by_status))
        assert listing.run_action(incident.id, action_id).state == "succeeded"
        assert core.read_node(node).spec.unschedulable
        resolved = dict(firing, status="resolved", endsAt=dt.datetime.now(dt.UTC).isoformat())
        ledger.record(parse(json.dumps(body(resolved)).encode()).alerts, dt.datetime.now(dt.UTC))
        [inc] = ledger.resolved_followups()

        engine.followup.after_resolve(inc)  # the cache has not synced: the view is unavailable
        assert ledger.get_incident(incident.id)["after_resolve"] == "", "a deferred follow-up was recorded as done"
        assert [i["id"] for i in ledger.resolved_followups()] == [incident.id], "it must be tried again"
        assert core.read_node(node).spec.unschedulable

        cache.start()
        assert cache.wait_synced(60)
        engine.followup.after_resolve(ledger.resolved_followups()[0])
        assert not core.read_node(node).spec.unschedulable
        assert "uncordon" in ledger.get_incident(incident.id)["after_resolve"]
    finally:
        cache.stop()
        ledger.close()
