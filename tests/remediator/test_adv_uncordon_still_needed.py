"""Adversarial: two incidents on one node. Incident A (an XID) cordons node n1; incident B (the GPU
fell off the bus) finds it cordoned already ("already unschedulable"), so the cordon stays A's.
A's alert resolves first and its uncordon-on-resolve passed every rail: the node went back into
service while B, still firing, needed it out. An uncordon waits (defers, tried again each tick)
while another firing incident holds a node-removing action on that node; once B resolves it runs
(an explicit uncordon rule, a "node healthy" alert, stays the policy's call).
The ledger's history keeps those actions of firing incidents however old (B may fire for days).
Pure core, the real config parser and the real SQLite ledger."""

from __future__ import annotations

import datetime as dt

from remediator.config import parse_config
from remediator.domain.decide import decide, plan_step
from remediator.domain.models import (
    FIELD_MANAGER,
    INCIDENT_ANNOTATION,
    ClusterView,
    Decision,
    Incident,
    NodeView,
    PastAction,
    PlannedAction,
    SafetyState,
)
from remediator.domain.payload import Alert
from remediator.domain.rails import Step, World
from remediator.store.ledger import SQLiteLedger

NOW = dt.datetime(2026, 1, 3, 12, tzinfo=dt.UTC)
CONFIG = parse_config({"safety": {"budget": {"max_nodes": 3}}, "policy": {"rules": [
    {"name": "xid", "match": ['alertname="GpuXidCritical"'],
     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}], "on_resolved": {"uncordon": True}},
    {"name": "healthy", "match": ['alertname="GpuNodeHealthy"'],
     "actions": [{"type": "uncordon_node", "params": {"node": "{{ labels.node }}"}}]}]}}, "adv.yaml")
XID, HEALTHY = CONFIG.rules
A = Incident("aa", NOW - dt.timedelta(minutes=30), {"alertname": "GpuXidCritical", "node": "n1"}, "resolved", id=1)
CLUSTER = ClusterView(nodes={
    "n1": NodeView("n1", unschedulable=True, unschedulable_owner=FIELD_MANAGER, annotations={INCIDENT_ANNOTATION: "1"}),
    "n2": NodeView("n2"), "n3": NodeView("n3")})


def _b_cordon(firing: bool) -> PastAction:  # B's cordon, two days old: "already unschedulable", succeeded
    return PastAction(2, "gpu-lost", "cordon_node", "n1", NOW - dt.timedelta(days=2), "succeeded", firing)


def _uncordon(history) -> Decision:
    step = Step("uncordon", A, XID, (PlannedAction("uncordon_node", "n1", {"node": "n1", "only_incident": "true"}),))
    return plan_step(step, World(CLUSTER, history, CONFIG.safety, SafetyState(), NOW, needs_cluster=True))


def test_an_uncordon_waits_while_another_firing_incident_needs_the_node_out():
    d = _uncordon([_b_cordon(firing=True)])
    assert d.outcome == "defer" and d.reason == "still_needed", d.trace
    assert "2" in d.detail


def test_once_the_other_incident_resolved_the_uncordon_runs():
    assert _uncordon([_b_cordon(firing=False)]).outcome == "act"
    assert _uncordon([]).outcome == "act"


def test_an_explicit_uncordon_rule_is_the_policys_call():
    """A "node healthy again" alert with an uncordon rule says so explicitly (test_node_actions'
    test_uncordon_only_what_vigil_cordoned): only the automatic uncordon on resolve waits."""
    healthy = Incident("bb", NOW - dt.timedelta(minutes=1), {"alertname": "GpuNodeHealthy", "node": "n1"}, id=3)
    d = decide(healthy, CONFIG.rules, [_b_cordon(firing=True)], CLUSTER, CONFIG.safety, SafetyState(), NOW)
    assert d.outcome == "act", d.trace


def test_the_ledger_history_keeps_old_node_actions_of_firing_incidents(tmp_path):
    ledger = SQLiteLedger(str(tmp_path / "l.db"))
    try:
        long_ago = NOW - dt.timedelta(days=2)
        b = Alert("firing", {"alertname": "GpuLost", "node": "n1"}, {}, long_ago, dt.datetime(1, 1, 1, tzinfo=dt.UTC),
                  "bb")
        ledger.record([b], long_ago)
        [inc] = ledger.due(long_ago)
        [aid] = ledger.save_decision(inc.id, Decision("act", "gpu-lost", (PlannedAction("cordon_node", "n1",
                                                                                       {"node": "n1"}),)), long_ago)
        ledger.claim_action(aid, long_ago)
        ledger.finish_action(aid, "succeeded", {"detail": "already unschedulable"}, long_ago)
        window = NOW - dt.timedelta(hours=1)
        assert [(p.incident_id, p.type, p.state, p.incident_firing) for p in ledger.history(window)] == \
            [(inc.id, "cordon_node", "succeeded", True)]
        ledger.record([Alert("resolved", b.labels, {}, long_ago, NOW, "bb")], NOW)
        assert ledger.history(window) == []
    finally:
        ledger.close()
