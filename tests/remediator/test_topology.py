"""Topology-aware remediation, pure: which domains are degraded (the correlation window and
threshold), the topology rail (members join the domain incident, wait while it opens, running
ladders stop), the domain budget counting foreign cordons, and a domain rule rendered per member."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from remediator.config import ConfigError, parse_config
from remediator.domain.decide import decide, plan_escalation, plan_step
from remediator.domain.models import ClusterView, Incident, NodeView, PastAction, PlannedAction, SafetyState
from remediator.domain.rails import Step, World
from remediator.domain.topology import (
    DOMAIN_ALERT,
    correlate,
    domain_alert,
    fingerprint,
    is_domain_incident,
)

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
CLIQUE = "nvidia.com/gpu.clique"
NODE = "{{ labels.node }}"
CONFIG = parse_config({
    "topology": {"domains": [{"kind": "nvlink", "label": CLIQUE}]},
    "safety": {"budget": {"max_nodes": 2, "domains": {"nvlink": {"max_domains": 1}}}},
    "policy": {
        "rules": [{"name": "xid", "match": ['alertname="Xid"'],
                   "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                               {"type": "reboot_node", "params": {"node": NODE}}],
                   "verify": {"alert_resolved": True},
                   "escalate": {"steps": [{"type": "replace_node", "params": {"node": NODE}}]}}],
        "domain_rules": [{"name": "nvlink-domain", "match": [f'alertname="{DOMAIN_ALERT}"'],
                          "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                                      {"type": "drain_node", "params": {"node": NODE}}]}]}})
[XID], [DOMAIN] = CONFIG.rules, CONFIG.domain_rules


def cluster(**over: dict) -> ClusterView:
    """Two NVLink domains of 4 nodes (a0-a3 in clique A, b0-b3 in clique B), labelled like GFD."""
    nodes = {f"{d}{i}": NodeView(f"{d}{i}", labels={CLIQUE: f"cluster-1.{d.upper()}"}) for d in "ab" for i in range(4)}
    for name, kw in over.items():
        nodes[name] = dataclasses.replace(nodes[name], **kw)
    return ClusterView(nodes)


def fault(node: str, at: float = 0.0, i: int | None = None, alertname: str = "Xid") -> Incident:
    return Incident(f"fp-{node}", NOW + dt.timedelta(seconds=at), {"alertname": alertname, "node": node, "xid": "79",
                                                                     "severity": "critical"},
                    id=i if i is not None else 100 + hash(node) % 100)


def opened(corr, key=("nvlink", "cluster-1.A"), i: int = 7) -> Incident:
    alert = domain_alert(corr.degraded[key], NOW)
    return Incident(alert.fingerprint, alert.starts_at, alert.labels, alert.annotations, id=i)


def world(corr, view=None, history=()) -> World:
    return World(view or cluster(), history, CONFIG.safety, SafetyState(), NOW + dt.timedelta(minutes=1),
                 topology=corr)


def test_three_faults_within_the_window_degrade_their_domain_only():
    corr = correlate([fault("a0", 0), fault("a1", 30), fault("a2", 200), fault("b0", 10)], cluster(),
                     CONFIG.topology)
    assert list(corr.degraded) == [("nvlink", "cluster-1.A")]
    d = corr.degraded[("nvlink", "cluster-1.A")]
    assert d.faulty == ("a0", "a1", "a2") and d.members == ("a0", "a1", "a2", "a3") and d.threshold == 2
    assert d.evidence().index("a0: Xid xid=79") < d.evidence().index("a1:") < d.evidence().index("a2:")
    assert corr.degraded_for("a3") is d and corr.degraded_for("b0") is None
    assert [x.key for x in corr.to_open()] == [d.key]


def test_faults_further_apart_than_the_window_are_independent():
    corr = correlate([fault("a0", 0), fault("a1", 601)], cluster(), CONFIG.topology)
    assert not corr.degraded
    corr = correlate([fault("a0", 0), fault("a1", 601), fault("a2", 700)], cluster(), CONFIG.topology)
    assert corr.degraded[("nvlink", "cluster-1.A")].faulty == ("a1", "a2")


def test_the_threshold_is_the_larger_of_min_nodes_and_min_percent():
    topology = dataclasses.replace(CONFIG.topology, min_percent=75)
    assert topology.threshold(4) == 3 and CONFIG.topology.threshold(18) == 5
    assert not correlate([fault("a0"), fault("a1")], cluster(), topology).degraded
    assert correlate([fault("a0"), fault("a1"), fault("a2")], cluster(), topology).degraded


def test_only_faults_count_and_one_node_counts_once():
    healthy = fault("a1", alertname="GpuNodeHealthy")
    healthy = dataclasses.replace(healthy, labels={**healthy.labels, "severity": "info"})
    again = dataclasses.replace(fault("a0", 5), fingerprint="other", labels={**fault("a0").labels, "xid": "48"})
    assert not correlate([fault("a0"), again, healthy], cluster(), CONFIG.topology).degraded


def test_an_open_domain_incident_resolves_when_its_domain_recovers():
    corr = correlate([fault("a0"), fault("a1")], cluster(), CONFIG.topology)
    inc = opened(corr)
    assert is_domain_incident(inc) and inc.fingerprint == fingerprint(("nvlink", "cluster-1.A"))
    assert inc.starts_at == fault("a1").starts_at, "it starts when the threshold was reached"
    again = correlate([fault("a0"), fault("a1", 300)], cluster(), CONFIG.topology)  # a1 resolved and failed again
    assert opened(again).starts_at != inc.starts_at, "a later degradation is a new incident"
    assert correlate([fault("a0"), fault("a1"), inc], cluster(), CONFIG.topology).to_open() == []
    assert correlate([fault("a0"), inc], cluster(), CONFIG.topology).to_resolve() == [inc]
    delivered = dataclasses.replace(inc, fingerprint="from-alertmanager")  # the Prometheus rule's: its own resolve
    assert correlate([fault("a0"), delivered], cluster(), CONFIG.topology).to_resolve() == []


def test_a_members_first_step_waits_while_the_domain_incident_opens_then_joins_it():
    firing = [fault("a0", i=1), fault("a1", i=2), fault("a2", i=3)]
    corr = correlate(firing, cluster(), CONFIG.topology)
    d = decide(firing[0], CONFIG.rules, [], cluster(), CONFIG.safety, SafetyState(), NOW, topology=corr)
    assert (d.outcome, d.reason) == ("wait", "domain_opening"), d.trace
    corr = correlate([*firing, opened(corr, i=7)], cluster(), CONFIG.topology)
    d = decide(firing[0], CONFIG.rules, [], cluster(), CONFIG.safety, SafetyState(), NOW, topology=corr)
    assert (d.outcome, d.reason) == ("joined", "domain") and "domain incident 7 takes over" in d.detail
    assert d.actions == ()
    other = fault("b0", i=4)  # elsewhere: its normal ladder
    d = decide(other, CONFIG.rules, [], cluster(), CONFIG.safety, SafetyState(), NOW, topology=corr)
    assert d.outcome == "act" and [a.type for a in d.actions] == ["cordon_node", "reboot_node"]


def test_a_running_ladder_of_a_member_stops_at_its_next_step():
    firing = [fault("a0", i=1), fault("a1", i=2)]
    corr = correlate([*firing, opened(correlate(firing, cluster(), CONFIG.topology))], cluster(), CONFIG.topology)
    # the reboot planned before the domain degraded, admitted right before it runs (as the engine does)
    reboot = Step("first", firing[0], XID, (PlannedAction("reboot_node", "a0", {"node": "a0"}),))
    assert plan_step(reboot, world(corr)).outcome == "joined"
    escalation = plan_escalation(firing[0], XID, 0, world(corr))
    assert (escalation.outcome, escalation.reason) == ("joined", "domain")


def test_a_domain_incident_cordons_and_drains_every_member_beside_running_member_ladders():
    firing = [fault("a0", i=1), fault("a1", i=2)]
    inc = opened(correlate(firing, cluster(), CONFIG.topology))
    corr = correlate([*firing, inc], cluster(), CONFIG.topology)
    running = [PastAction(1, "xid", "reboot_node", "a0", NOW, "running")]  # one_repair does not hold it back
    d = decide(inc, CONFIG.domain_rules, running, cluster(), CONFIG.safety, SafetyState(), NOW, topology=corr)
    assert d.outcome == "act", d.trace
    assert [(a.type, a.target) for a in d.actions] == [("cordon_node", f"a{i}") for i in range(4)] + [
        ("drain_node", f"a{i}") for i in range(4)]
    assert any(line.startswith("topology: ok: nvlink domain cluster-1.A: 2 of 4") for line in d.trace)
    assert any("1 of 2 nvlink domains out" in line for line in d.trace), "the node budget (max 2) does not apply"


def test_the_domain_budget_counts_a_domain_out_whoever_took_a_member_out():
    firing = [fault("a0", i=1), fault("a1", i=2), fault("b0", i=3), fault("b1", i=4)]
    corr = correlate(firing, cluster(), CONFIG.topology)
    a, b = opened(corr, ("nvlink", "cluster-1.A"), 7), opened(corr, ("nvlink", "cluster-1.B"), 8)
    view = cluster(a3={"unschedulable": True, "unschedulable_owner": "kubectl"})  # a foreign cordon in A
    corr = correlate([*firing, a, b], view, CONFIG.topology)
    d = decide(b, CONFIG.domain_rules, [], view, CONFIG.safety, SafetyState(), NOW, topology=corr)
    assert (d.outcome, d.reason) == ("wait", "budget"), d.trace
    assert "cluster-1.A (a3: unschedulable)" in d.detail
    d = decide(a, CONFIG.domain_rules, [], view, CONFIG.safety, SafetyState(), NOW, topology=corr)
    assert d.outcome == "act", "A is out already: its own incident adds no domain"


def test_a_second_domain_incident_for_one_domain_joins_the_first():
    firing = [fault("a0", i=1), fault("a1", i=2)]
    first = opened(correlate(firing, cluster(), CONFIG.topology), i=7)
    second = dataclasses.replace(first, fingerprint="from-prometheus", id=9)  # GpuDomainDegraded from the rule
    corr = correlate([*firing, second, first], cluster(), CONFIG.topology)
    d = decide(second, CONFIG.domain_rules, [], cluster(), CONFIG.safety, SafetyState(), NOW, topology=corr)
    assert (d.outcome, d.reason) == ("joined", "domain")


@pytest.mark.parametrize("raw, error", [
    ({"topology": {"domains": [{"kind": "NV Link", "label": CLIQUE}]}}, "a lowercase name"),
    ({"topology": {"domains": [{"kind": "nvlink"}]}}, "the node label"),
    ({"topology": {"domains": [{"kind": "nvlink", "label": CLIQUE}]}}, "at least one rule for GpuDomainDegraded"),
    ({"safety": {"budget": {"domains": {"rack": {"max_domains": 1}}}}}, "not in topology.domains"),
    ({"topology": {"window": "0s"}}, "window"),
])
def test_topology_config_errors_name_the_key(raw, error):
    with pytest.raises(ConfigError, match=error):
        parse_config(raw)


def test_explain_decides_a_domain_incident_with_the_domain_rules(tmp_path, capsys):
    import json

    import yaml

    from remediator.cli import main

    from .payloads import alert, body

    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": {"path": str(tmp_path / "none.db")},
        "topology": {"domains": [{"kind": "nvlink", "label": CLIQUE}]},
        "policy": {"rules": [], "domain_rules": [
            {"name": "nvlink-domain", "match": [f'alertname="{DOMAIN_ALERT}"'],
             "actions": [{"type": "cordon_node", "params": {"node": NODE}}]}]}}))
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(body(alert({"alertname": DOMAIN_ALERT, "domain_kind": "nvlink", "domain": "c.1"},
                                             annotations={"members": "m0,m1"}))))
    assert main(["explain", "--json", "--config", str(cfg), str(payload)]) == 0
    [r] = json.loads(capsys.readouterr().out)
    assert r["rule"] == "nvlink-domain" and r["outcome"] == "act", r
    assert [(a["type"], a["target"]) for a in r["actions"]] == [("cordon_node", "m0"), ("cordon_node", "m1")]


def test_a_node_step_says_which_multi_node_job_spanning_its_domain_it_breaks():
    from remediator.domain.models import PodView

    view = dataclasses.replace(cluster(), pods={
        "ml/train-0": PodView("Job/ml/train-workers-0", node="a0", job="JobSet/ml/train"),
        "ml/train-1": PodView("Job/ml/train-workers-1", node="a1", job="JobSet/ml/train"),
        "ml/web-0": PodView("Deployment/ml/web", node="a0", job="Deployment/ml/web")})
    corr = correlate([], view, CONFIG.topology)
    d = decide(fault("a0", i=1), CONFIG.rules, [], view, CONFIG.safety, SafetyState(), NOW, topology=corr)
    [line] = [x for x in d.trace if x.startswith("topology: ok")]
    assert "taking a0 out breaks JobSet/ml/train, which spans 2 nodes of nvlink domain cluster-1.A (a0, a1)" in line
    assert "web" not in line, "a workload on one node of the domain is not a multi-node job"
