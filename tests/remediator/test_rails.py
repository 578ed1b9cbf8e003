"""Each rail alone, the order of the pipeline, the later steps (escalation, restore, uncordon)
through the same rails, per-pool budgets, three-valued checks, and `remediator explain` showing
the escalation steps' traces. Pure: no cluster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
import yaml

from remediator.cli import main
from remediator.config import ConfigError, parse_config
from remediator.domain import rails
from remediator.domain.budget import Limits, Pools
from remediator.domain.decide import after_verification, decide, plan_escalation, plan_step
from remediator.domain.models import (
    DOES_NOT_HOLD,
    FIELD_MANAGER,
    HOLDS,
    UNKNOWN,
    CheckResult,
    ClusterView,
    Incident,
    NodeView,
    PastAction,
    PlannedAction,
    PodView,
    SafetyState,
    Taint,
    WorkloadView,
)
from remediator.domain.safety import Budget, Safety

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
CONFIG = parse_config({"policy": {"rules": [
    {"name": "xid", "match": ['alertname="Xid"'],
     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
     "verify": {"alert_resolved": True},
     "escalate": {"steps": [{"type": "drain_node", "params": {"node": "{{ labels.node }}"}},
                            {"type": "taint_node", "params": {"node": "{{ labels.node }}"}}]},
     "on_resolved": {"uncordon": True}},
    {"name": "pod", "match": ['alertname="Down"'], "min_available": "50%",
     "actions": [{"type": "restart_pod", "params": {"namespace": "ml", "pod": "{{ labels.pod }}"}}]},
    {"name": "quarantine", "match": ['alertname="Bad"'],
     "actions": [{"type": "quarantine_pod", "params": {"namespace": "ml", "pod": "{{ labels.pod }}"}}]},
]}})
XID, POD, QUARANTINE = CONFIG.rules
SAFETY = Safety(budget=Budget(max_nodes=2, min_nodes=1))


def nodes(n=6, **over) -> dict[str, NodeView]:
    out = {f"n{i}": NodeView(f"n{i}", labels={"pool": "a" if i < n // 2 else "b"}) for i in range(n)}
    for name, kw in over.items():
        out[name] = dataclasses.replace(out[name], **kw)
    return out


def view(**kw) -> ClusterView:
    return ClusterView(kw.pop("nodes", nodes()), **kw)


OPEN = SafetyState()


def world(cluster=None, *, state=OPEN, safety=SAFETY, history=(), dry=False, guard=None) -> rails.World:
    return rails.World(cluster or view(), list(history), safety, state, NOW, dry, guard)


def inc(node="n1", alertname="Xid", status="firing", **labels) -> Incident:
    return Incident("f", NOW - dt.timedelta(seconds=30), {"alertname": alertname, "node": node, **labels}, {},
                    status, id=7)


def step(kind="first", actions=None, rule=XID, incident=None, owner=None) -> rails.Step:
    return rails.Step(kind, incident or inc(), rule, tuple(actions or [PlannedAction("cordon_node", "n1",
                                                                                     {"node": "n1"})]), owner)


def test_the_rails_run_in_the_fixed_order_and_each_adds_a_line():
    d = plan_step(step(), world())
    names = [line.split(":")[0] for line in d.trace[1:-1]]
    assert names == [name for name, _ in rails.RAILS] == ["paused", "stale", "min_firing", "target", "ownership",
                                                         "topology", "one_repair", "denied", "availability",
                                                         "cooldown", "rate_limit", "repeat_offenders", "guard",
                                                         "breaker", "budgets", "window", "approval"]
    assert d.outcome == "act"


@pytest.mark.parametrize(("rail", "s", "w", "reason"), [
    (rails.paused, step(), world(state=SafetyState(paused=True)), "paused"),
    (rails.paused, step(), world(view(nodes=nodes(n1={"annotations": {"vigil.io/remediation": "disabled"}}))),
     "paused"),
    (rails.paused, step(actions=[PlannedAction("drain_node", "n1", {"node": "n1"})]),
     world(view(pods={"ml/p": PodView("Deployment/ml/x", node="n1")}, paused_namespaces=frozenset({"ml"}))), "paused"),
    (rails.target, step(actions=[PlannedAction("cordon_node", "zz", {"node": "zz"})]), world(), "unknown_target"),
    (rails.target, step(), world(view(nodes=nodes(n1={"managed": False}))), "outside_node_selector"),
    (rails.ownership, step("uncordon", [PlannedAction("uncordon_node", "n1", {"node": "n1"})]),
     world(view(nodes=nodes(n1={"unschedulable": True, "unschedulable_owner": "kubectl"}))), "foreign_cordon"),
    (rails.ownership, step("uncordon", [PlannedAction("uncordon_node", "n1", {"node": "n1"})]),
     world(view(nodes=nodes(n1={"unschedulable": True, "unschedulable_owner": FIELD_MANAGER,
                                "annotations": {"vigil.io/incident": "8"}}))), "foreign_cordon"),
    (rails.ownership, step("restore", [PlannedAction("failover_service", "ml/s", {})], owner="vigil:8"), world(),
     "not_owner"),
    (rails.breaker, step(), world(state=SafetyState(breaker_open=True)), "breaker_open"),
    (rails.budgets, step(), world(view(nodes=nodes(n2={"ready": False}, n3={"taints": (Taint("x", "NoExecute"),)}))),
     "budget"),
])
def test_each_rail_blocks_alone(rail, s, w, reason):
    v = rail(s, w)
    assert not v.passed and v.reason == reason, v


def test_ownership_passes_for_this_incidents_own_cordon():
    own = nodes(n1={"unschedulable": True, "unschedulable_owner": FIELD_MANAGER,
                    "annotations": {"vigil.io/incident": "7"}})
    assert rails.ownership(step("uncordon", [PlannedAction("uncordon_node", "n1", {"node": "n1"})]),
                           world(view(nodes=own))).passed
    assert rails.ownership(step("restore", [PlannedAction("failover_service", "ml/s", {})], owner="vigil:7"),
                           world()).passed


PODS = {f"ml/p{i}": PodView("Deployment/ml/llm", ready=i < 2, services=("ml/svc",)) for i in range(4)}


@pytest.mark.parametrize(("ready", "desired", "passes"), [(3, 4, True), (2, 4, False), (1, 1, False)])
def test_availability_counts_other_ready_replicas(ready, desired, passes):
    pods = {f"ml/p{i}": PodView("Deployment/ml/llm", ready=i < ready) for i in range(desired)}
    cluster = view(pods=pods, workloads={"Deployment/ml/llm": WorkloadView(desired, ready)})
    s = step(actions=[PlannedAction("restart_pod", "ml/p0", {"namespace": "ml", "pod": "p0"})], rule=POD)
    v = rails.availability(s, world(cluster))
    assert v.passed is passes, v.line  # rule POD: min_available 50% of desired, rounded up
    if not passes:
        assert "Deployment/ml/llm" in v.line and f"of {desired} replicas" in v.line


def test_quarantine_keeps_min_available_endpoints():
    cluster = view(pods=PODS, service_endpoints={"ml/svc": frozenset({"ml/p0", "ml/p1"})})
    s = step(actions=[PlannedAction("quarantine_pod", "ml/p0", {"namespace": "ml", "pod": "p0"})], rule=QUARANTINE)
    assert rails.availability(s, world(cluster)).passed
    lone = view(pods=PODS, service_endpoints={"ml/svc": frozenset({"ml/p0"})})
    v = rails.availability(s, world(lone))
    assert not v.passed and "Service ml/svc" in v.line and "0 ready endpoints of 1" in v.line


def test_budget_counts_not_ready_cordoned_tainted_and_in_flight_nodes():
    from remediator.domain.models import PastAction

    sick = nodes(n2={"ready": False}, n3={"unschedulable": True})
    d = plan_step(step(), world(view(nodes=sick), safety=Safety(budget=Budget(max_nodes=3))))
    assert d.outcome == "act" and d.budget.nodes_out == 3 and d.budget.total_nodes == 6
    flight = [PastAction(1, "xid", "cordon_node", "n4", NOW, "planned")]
    d = plan_step(step(), world(view(nodes=sick), safety=Safety(budget=Budget(max_nodes=3)), history=flight))
    assert d.reason == "budget" and "n4 (Vigil plan in flight)" in d.detail


def test_percentages_are_over_managed_nodes_only():
    many = {**nodes(4), **{f"x{i}": NodeView(f"x{i}", managed=False) for i in range(20)}}
    d = plan_step(step(), world(view(nodes=many), safety=Safety(budget=Budget(max_percent=50, min_nodes=0))))
    assert d.budget.total_nodes == 4 and d.budget.nodes_allowed == 2


def test_per_pool_budgets_keep_one_pools_storm_from_using_anothers_repairs():
    safety = Safety(budget=Budget(max_nodes=10, pools=Pools("pool", Limits(max_nodes=1), {"b": Limits(max_nodes=2)})))
    pool_a_busy = nodes(n0={"unschedulable": True})
    d = plan_step(step(), world(view(nodes=pool_a_busy), safety=safety))  # n1 is in pool a
    assert d.reason == "budget" and "pool pool=a" in d.detail
    d = plan_step(step(actions=[PlannedAction("cordon_node", "n4", {"node": "n4"})]),
                  world(view(nodes=pool_a_busy), safety=safety))
    assert d.outcome == "act" and ("b", 1, 2, 3) in d.budget.pools
    assert any("pool pool=b: 1/3 unavailable" in line for line in d.trace)


def test_pools_config_and_old_keys():
    cfg = parse_config({"safety": {"budget": {"max_percent": 20, "pools": {
        "label": "nvidia.com/gpu.product", "default": {"max_nodes": 1},
        "overrides": {"H100": {"max_percent": 25, "min_nodes": 2}}}}}})
    pools = cfg.safety.budget.pools
    assert pools.limits("H100") == Limits(None, 25, 2) and pools.limits("A100") == Limits(1, None, 1)
    assert cfg.safety.budget.max_percent == 20
    with pytest.raises(ConfigError, match="label"):
        parse_config({"safety": {"budget": {"pools": {"default": {"max_nodes": 1}}}}})
    with pytest.raises(ConfigError, match="min_available"):
        parse_config({"policy": {"rules": [{"name": "r", "match": ['a="b"'], "min_available": "x",
                                            "actions": [{"type": "cordon_node", "params": {"node": "n"}}]}]}})


def test_escalation_goes_through_the_same_rails():
    d = plan_escalation(inc(), XID, 0, world(state=SafetyState(paused=True)))
    assert d.outcome == "wait" and d.reason == "paused" and d.kind == "escalation"
    d = plan_escalation(inc(), XID, 1, world())
    assert d.outcome == "act" and d.actions[0].type == "taint_node"
    assert plan_escalation(inc(status="resolved"), XID, 0, world()).outcome == "resolved"
    d = plan_escalation(inc(), XID, 0, world(view(nodes=nodes(n0={"ready": False}, n2={"ready": False}))))
    assert d.reason == "budget"  # two nodes NotReady plus the drained one: over max_nodes 2


@pytest.mark.parametrize(("outcome", "on_unknown", "expected"), [
    (HOLDS, "stop", "verified"), (DOES_NOT_HOLD, "stop", "escalate"), (UNKNOWN, "stop", "withhold"),
    (UNKNOWN, "escalate", "escalate"),
])
def test_unknown_never_escalates_unless_the_rule_opts_in(outcome, on_unknown, expected):
    rule = dataclasses.replace(XID, verify=dataclasses.replace(XID.verify, on_unknown=on_unknown))
    assert after_verification(CheckResult(outcome, "x"), rule) == expected


def test_guard_unknown_fails_closed():
    from remediator.domain.policy import Check

    rule = dataclasses.replace(XID, guard=Check(query="up"))
    d = decide(inc(), [rule], [], view(), SAFETY, SafetyState(), NOW, guard=CheckResult(UNKNOWN, "down"))
    assert d.reason == "guard_unavailable"


def test_explain_prints_the_rail_by_rail_trace_of_each_escalation_step(tmp_path, capsys):
    from .payloads import alert, body

    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({"ledger": {"path": str(tmp_path / "none.db")}, "policy": {"rules": [{
        "name": "xid", "match": ['alertname="Xid"'],
        "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
        "verify": {"alert_resolved": True},
        "escalate": {"steps": [{"type": "drain_node", "params": {"node": "{{ labels.node }}"}}]}}]}}))
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(body(alert({"alertname": "Xid", "node": "n1"}))))
    assert main(["explain", "--config", str(cfg), str(payload)]) == 0
    out = capsys.readouterr().out
    assert "escalation step 1 of 1" in out and "=> escalation step 1: act" in out
    assert out.count("budgets: ok") == 2 and out.count("paused: ok") == 2
    assert main(["explain", "--json", "--config", str(cfg), str(payload)]) == 0
    [r] = json.loads(capsys.readouterr().out)
    assert r["escalation"][0]["outcome"] == "act" and r["escalation"][0]["trace"][0].startswith("escalation step 1")


def _running(node: str, type_: str, incident_id: int = 3) -> PastAction:
    return PastAction(incident_id, "other-rule", type_, node, NOW - dt.timedelta(seconds=5), "running", admitted=True)


def test_a_second_fault_on_a_node_joins_the_repair_already_running_there():
    """XID 79 then GpuLost on the same node: one ladder (NVSentinel's equivalence groups), across rules."""
    d = plan_step(step(actions=[PlannedAction("cordon_node", "n1", {"node": "n1"})]),
                  world(history=[_running("n1", "reboot_node")]))
    assert d.outcome == "wait" and d.reason == "joined" and "incident 3" in d.detail, d.trace
    assert not d.actions


def test_a_harsher_repair_waits_for_the_one_running_on_its_node():
    d = plan_step(step(actions=[PlannedAction("replace_node", "n1", {"node": "n1"})]),
                  world(history=[_running("n1", "reboot_node")]))
    assert d.outcome == "wait" and d.reason == "node_busy", d.trace


def test_a_repair_on_another_node_is_not_held_by_a_running_one():
    d = plan_step(step(), world(history=[_running("n2", "reboot_node")]))
    assert d.outcome == "act", d.trace


def test_a_repair_of_a_node_just_repaired_waits_for_its_other_alerts_to_resolve():
    done = dataclasses.replace(_running("n1", "reboot_node"), state="succeeded", done_at=NOW - dt.timedelta(seconds=20))
    d = plan_step(step(), world(history=[done]))
    assert d.outcome == "wait" and d.reason == "node_settling", d.trace
    assert d.not_before == done.done_at + dt.timedelta(seconds=rails.SETTLE)
    later = dataclasses.replace(done, done_at=NOW - dt.timedelta(seconds=rails.SETTLE + 1))
    assert plan_step(step(), world(history=[later])).outcome == "act"
    fresh = dataclasses.replace(inc(), starts_at=NOW - dt.timedelta(seconds=10))  # a new fault, after the repair
    assert plan_step(step(incident=fresh), world(history=[done])).outcome == "act"


def test_explain_says_what_a_plan_would_wait_for(tmp_path, capsys):
    from remediator.store.ledger import SQLiteLedger

    from .payloads import alert, body

    ledger = SQLiteLedger(str(tmp_path / "l.db"))
    ledger.set_state("paused", json.dumps({"paused": True, "reason": "maintenance", "by": "ops"}))
    ledger.close()
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({"ledger": {"path": str(tmp_path / "l.db")}, "policy": {"rules": [{
        "name": "xid", "match": ['alertname="Xid"'],
        "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}}))
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(body(alert({"alertname": "Xid", "node": "n1"}))))
    assert main(["explain", "--config", str(cfg), str(payload)]) == 0
    out = capsys.readouterr().out
    assert "=> would wait for paused: remediation is paused globally" in out, out
    assert "blocked" not in out.split("=>")[-1]
