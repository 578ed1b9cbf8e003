"""The pure decision core: a parametrized safety matrix, no cluster, no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from remediator.config import Breaker, Budget, Safety, parse_config
from remediator.domain.decide import decide
from remediator.domain.models import (
    FIELD_MANAGER,
    CheckResult,
    ClusterView,
    Incident,
    NodeView,
    PastAction,
    PodView,
    SafetyState,
)

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)

POLICY = parse_config({
    "policy": {"rules": [
        {"name": "xid", "match": ['alertname="GpuXidCritical"', 'node!=""'],
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
                     {"type": "drain_node", "params": {"node": "{{ labels.node }}"}}],
         "cooldown": "30m", "max_actions": 3, "window": "1h"},
        {"name": "slow", "match": ['alertname=~"Gpu(Thermal|Power).*"'], "min_firing": "2m",
         "actions": [{"type": "taint_node", "params": {"node": "{{ labels.node }}", "key": "vigil.io/hot"}}]},
        {"name": "lost", "match": ['alertname="GpuLost"'],
         "actions": [{"type": "taint_node", "params": {"node": "{{ labels.instance_node }}"}}]},
        {"name": "undo", "match": ['alertname="GpuHealthy"'],
         "actions": [{"type": "uncordon_node", "params": {"node": "{{ labels.node }}"}}]},
    ]},
})
RULES = POLICY.rules
SAFETY = Safety(max_alert_age=3600, budget=Budget(max_nodes=3, max_percent=20, min_nodes=1),
                breaker=Breaker(max_actions=10, window=300))


def cluster(n: int = 20, *, unschedulable: tuple[str, ...] = (), annotations: dict | None = None,
            gpus: int = 8) -> ClusterView:
    return ClusterView({f"n{i}": NodeView(f"n{i}", f"n{i}" in unschedulable, gpus,
                                          (annotations or {}).get(f"n{i}", {})) for i in range(n)})


def incident(node: str = "n1", alertname: str = "GpuXidCritical", age: float = 10, status: str = "firing",
             **labels: str) -> Incident:
    return Incident("abc123", NOW - dt.timedelta(seconds=age), {"alertname": alertname, "node": node, **labels},
                    {}, status, id=99)


def past(target: str, *, rule: str = "xid", ago: float = 60, state: str = "succeeded", incident_id: int = 1,
         type_: str = "cordon_node", firing: bool = True) -> PastAction:
    return PastAction(incident_id, rule, type_, target, NOW - dt.timedelta(seconds=ago), state, firing)


OPEN = SafetyState()


def run(inc=None, history=(), view=None, safety=SAFETY, state=OPEN, **kw):
    return decide(inc or incident(), RULES, list(history), view or cluster(), safety, state, NOW, **kw)


def test_acts_with_rendered_targets_and_a_trace():
    d = run()
    assert d.outcome == "act" and d.rule == "xid"
    assert [(a.type, a.target) for a in d.actions] == [("cordon_node", "n1"), ("drain_node", "n1")]
    assert any("rule 'xid' matches" in t for t in d.trace) and d.trace[-1] == "act"
    assert d.budget.nodes_out == 1 and d.budget.nodes_allowed == 3


def test_resolved_alerts_are_never_acted_on():
    d = run(incident(status="resolved"))
    assert d.outcome == "resolved" and not d.actions


def test_no_rule_matches():
    assert run(incident(alertname="SomethingElse")).outcome == "no_match"


def test_missing_label_blocks_with_a_reason_not_a_crash():
    d = run(incident(alertname="GpuLost"))
    assert d.outcome == "blocked" and d.reason == "template_error" and "instance_node" in d.detail


def test_empty_target_blocks():
    d = run(Incident("f", NOW, {"alertname": "GpuLost", "instance_node": ""}, id=1))
    assert d.reason == "template_error"


@pytest.mark.parametrize(
    ("case", "kwargs", "reason"),
    [
        ("global pause", {"state": SafetyState(paused=True)}, "paused"),
        ("node annotation", {"view": cluster(annotations={"n1": {"vigil.io/remediation": "disabled"}})}, "paused"),
        ("stale startsAt", {"inc": incident(age=7200)}, "stale"),
        ("unknown node", {"inc": incident(node="nope")}, "unknown_target"),
        ("cooldown on the target", {"history": [past("n1", ago=600)]}, "cooldown"),
        ("rate limit of the rule", {"history": [past(f"n{i}", incident_id=i, ago=900) for i in (5, 6, 7)]},
         "rate_limit"),
        ("breaker already open", {"state": SafetyState(breaker_open=True)}, "breaker_open"),
        ("budget: 3 nodes out", {"view": cluster(unschedulable=("n2", "n3", "n4"))}, "budget"),
        ("budget: in-flight cordons count", {"history": [past(f"n{i}", rule="other", state="planned",
                                                              incident_id=i) for i in (2, 3, 4)]}, "budget"),
    ],
)
def test_safety_matrix_blocks(case, kwargs, reason):
    """A rail that can clear holds the plan back (wait); one that says never refuses it (blocked)."""
    d = run(**kwargs)
    assert d.outcome == ("blocked" if reason in ("stale", "unknown_target") else "wait"), case
    assert d.reason == reason, (case, d.detail)
    assert not d.actions  # nothing is planned while it waits: it is decided afresh when the rail clears


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("cooldown expired", {"history": [past("n1", ago=3600)]}),
        ("cooldown is per target", {"history": [past("n2", ago=60)]}),
        ("failed actions do not count", {"history": [past("n1", ago=60, state="failed")]}),
        ("node already out does not add to the budget", {"view": cluster(unschedulable=("n1", "n2", "n3", "n4"))}),
        ("stale but the rule allows it", {}),
    ],
)
def test_safety_matrix_allows(case, kwargs):
    if case.startswith("stale"):
        rules = [dataclasses.replace(RULES[0], allow_stale=True)]
        d = decide(incident(age=7200), rules, [], cluster(), SAFETY, SafetyState(), NOW)
    else:
        d = run(**kwargs)
    assert d.outcome == "act", (case, d.reason, d.detail)


def test_min_firing_defers_until_it_has_held():
    d = run(incident(alertname="GpuThermalSlowdown", age=30))
    assert d.outcome == "defer" and d.not_before == NOW - dt.timedelta(seconds=30) + dt.timedelta(minutes=2)
    assert run(incident(alertname="GpuThermalSlowdown", age=121)).outcome == "act"


def test_breaker_opens_when_the_action_rate_exceeds_the_threshold():
    history = [past(f"n{i}", rule="other", incident_id=i, ago=30) for i in range(9)]
    d = run(history=history)
    assert d.outcome == "wait" and d.reason == "breaker_open" and d.open_breaker
    d = run(history=history[:8])
    assert d.outcome == "act"  # 8 + 2 = 10, at the threshold


def test_the_breaker_counts_attempts_the_budget_blocked():
    """In a storm the budget stops the cordons; the breaker must still see the storm."""
    history = [past(f"n{i}", rule="other", incident_id=i, ago=30, state="blocked") for i in range(9)]
    d = run(history=history)
    assert d.reason == "breaker_open" and d.open_breaker


def test_small_pool_can_always_repair_one_node():
    """The EKS 20 % rule blocks every repair in a 3-node pool (karpenter #2134); the floor does not."""
    safety = Safety(budget=Budget(max_percent=20, min_nodes=1))
    d = decide(incident(), RULES, [], cluster(3), safety, SafetyState(), NOW)
    assert d.outcome == "act" and d.budget.nodes_allowed == 1
    d = decide(incident(), RULES, [], cluster(3, unschedulable=("n0",)), safety, SafetyState(), NOW)
    assert d.outcome == "wait" and d.reason == "budget"


def test_gpu_weighted_budget():
    safety = Safety(budget=Budget(max_nodes=10, max_gpu_percent=10, min_nodes=1))
    view = ClusterView({**{f"n{i}": NodeView(f"n{i}", False, 8) for i in range(10)},
                        "big": NodeView("big", True, 8)})  # 88 GPUs, 8 out
    d = decide(incident(), RULES, [], view, safety, SafetyState(), NOW)
    assert d.outcome == "wait" and d.reason == "budget" and "GPUs" in d.detail


def test_uncordon_only_what_vigil_cordoned():
    mine = cluster(annotations={"n1": {"vigil.io/cordoned-by": "vigil"}}, unschedulable=("n1",))
    mine.nodes["n1"] = dataclasses.replace(mine.nodes["n1"], unschedulable_owner=FIELD_MANAGER)
    assert run(incident(alertname="GpuHealthy"), view=mine).outcome == "act"
    # the annotation alone proves nothing: someone else may have uncordoned and cordoned again
    stale = cluster(annotations={"n1": {"vigil.io/cordoned-by": "vigil"}}, unschedulable=("n1",))
    stale.nodes["n1"] = dataclasses.replace(stale.nodes["n1"], unschedulable_owner="kubectl")
    assert run(incident(alertname="GpuHealthy"), view=stale).reason == "foreign_cordon"
    theirs = cluster(unschedulable=("n1",))
    d = run(incident(alertname="GpuHealthy"), view=theirs)
    assert d.outcome == "blocked" and d.reason == "foreign_cordon"


def test_dry_run_decides_the_same_and_counts_would_have_acted():
    d = run(dry_run=True)
    assert d.outcome == "dry_run" and len(d.actions) == 2
    # a dry-run record counts for the cooldown only in dry-run mode
    history = [past("n1", ago=60, state="dry_run")]
    assert run(history=history, dry_run=True).reason == "cooldown"
    assert run(history=history).outcome == "act"


def test_without_a_cluster_view_the_budget_is_not_checked_but_said_so():
    d = run(view=ClusterView(available=False))
    assert d.outcome == "act" and any("not checked" in t for t in d.trace)


def test_first_matching_rule_wins_and_regex_is_anchored():
    d = run(incident(alertname="GpuPowerBrake", age=600))
    assert d.rule == "slow"
    assert run(incident(alertname="XGpuPowerBrake", age=600)).outcome == "no_match"


SERVICE_RULES = parse_config({"policy": {"rules": [
    {"name": "restart", "match": ['alertname="InferenceEndpointDown"'],
     "actions": [{"type": "restart_pod",
                  "params": {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"}}]},
    {"name": "shift", "match": ['alertname="InferenceLatencyBudgetBurn"'],
     "actions": [{"type": "shift_traffic", "params": {"namespace": "ml", "route": "llm", "from": "a", "to": "b",
                                                      "step": 30}}]},
]}}).rules
POD_VIEW = ClusterView({}, pods={"ml/llm-1": PodView("Deployment/ml/llm"), "ml/llm-2": PodView("Deployment/ml/llm"),
                                  "ml/bare": PodView("")})


def test_pod_restarts_are_budgeted_per_workload():
    safety = Safety(budget=Budget(max_pod_restarts_per_workload=2, window=3600))
    inc = Incident("f", NOW, {"alertname": "InferenceEndpointDown", "namespace": "ml", "pod": "llm-1"}, id=5)
    history = [PastAction(i, "restart", "restart_pod", f"ml/llm-{i}", NOW - dt.timedelta(minutes=5), "succeeded",
                          workload="Deployment/ml/llm") for i in (7, 8)]
    d = decide(inc, SERVICE_RULES, history, POD_VIEW, safety, SafetyState(), NOW)
    assert d.reason == "budget" and "Deployment/ml/llm" in d.detail
    d = decide(inc, SERVICE_RULES, history[:1], POD_VIEW, safety, SafetyState(), NOW)
    assert d.outcome == "act" and d.actions[0].workload == "Deployment/ml/llm"


def test_traffic_moved_is_budgeted_per_route():
    safety = Safety(budget=Budget(max_traffic_shift_percent=50, window=3600))
    inc = Incident("f", NOW, {"alertname": "InferenceLatencyBudgetBurn"}, id=5)
    one = [PastAction(1, "shift", "shift_traffic", "ml/llm", NOW - dt.timedelta(minutes=5), "succeeded", amount=30)]
    assert decide(inc, SERVICE_RULES, one, POD_VIEW, safety, SafetyState(), NOW).reason == "budget"
    assert decide(inc, SERVICE_RULES, [], POD_VIEW, safety, SafetyState(), NOW).outcome == "act"


def test_guard_results_decide():
    from remediator.domain.policy import Check

    GuardResult = CheckResult.of

    rules = [dataclasses.replace(SERVICE_RULES[1], guard=Check(query="up"))]
    inc = Incident("f", NOW, {"alertname": "InferenceLatencyBudgetBurn"}, id=5)
    run_ = lambda g: decide(inc, rules, [], POD_VIEW, SAFETY, SafetyState(), NOW, guard=g)  # noqa: E731
    assert run_(GuardResult(True, "ok")).outcome == "act"
    assert run_(GuardResult(False, "no")).reason == "guard"
    assert run_(GuardResult(None, "down")).reason == "guard_unavailable"
    open_rules = [dataclasses.replace(rules[0], guard=Check(query="up", mode="fail_open"))]
    assert decide(inc, open_rules, [], POD_VIEW, SAFETY, SafetyState(), NOW,
                  guard=GuardResult(None, "down")).outcome == "act"


def test_same_tick_plans_count_for_the_workload_budget():
    """The engine extends a tick's history with each plan; the workload must travel with it."""
    safety = Safety(budget=Budget(max_pod_restarts_per_workload=1, window=3600))
    first = decide(Incident("a", NOW, {"alertname": "InferenceEndpointDown", "namespace": "ml", "pod": "llm-1"},
                            id=1), SERVICE_RULES, [], POD_VIEW, safety, SafetyState(), NOW)
    planned = [PastAction(1, first.rule, a.type, a.target, NOW, "planned", workload=a.workload)
               for a in first.actions]
    second = decide(Incident("b", NOW, {"alertname": "InferenceEndpointDown", "namespace": "ml", "pod": "llm-2"},
                             id=2), SERVICE_RULES, planned, POD_VIEW, safety, SafetyState(), NOW)
    assert first.outcome == "act" and second.reason == "budget"
