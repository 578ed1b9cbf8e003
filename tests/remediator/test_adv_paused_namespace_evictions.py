"""Adversarial: `vigil.io/remediation: disabled` on a namespace means Vigil does not touch its pods.
The paused rail checked the pods a step would evict only for `drain_node`; `reboot_node` drains
the node itself before rebooting (and `replace_node` hands it to Cluster API or Karpenter, which
drain it), so either evicted the pods of a paused namespace. And `serve` watched pods and
namespaces only for the rules' first actions and escalation steps, not their on_failure steps, so
a drain in an on_failure ladder saw no pods at all. Pure core and the real config parser."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.config import parse_config
from remediator.domain.decide import decide, plan_on_failure
from remediator.domain.models import ClusterView, Incident, NodeView, PodView, SafetyState
from remediator.domain.rails import World

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
NODE = {"node": "{{ labels.node }}"}


def _config(actions: list[dict], on_failure: list[dict] | None = None):
    rule = {"name": "ladder", "match": ['alertname="GpuXidCritical"'], "actions": actions}
    if on_failure:
        rule["on_failure"] = {"steps": on_failure}
    return parse_config({"safety": {"budget": {"max_nodes": 3, "min_nodes": 1}},
                         "policy": {"rules": [rule]}}, "adv.yaml")


CLUSTER = ClusterView(nodes={n: NodeView(n, gpus=8) for n in ("n1", "n2", "n3", "n4")},
                      paused_namespaces=frozenset({"payments"}),
                      pods={"payments/api-0": PodView(workload="StatefulSet/payments/api", node="n1"),
                            "ml/llm-0": PodView(workload="Deployment/ml/llm", node="n2")})
INCIDENT = Incident("ab12", NOW - dt.timedelta(minutes=5),
                    {"alertname": "GpuXidCritical", "node": "n1", "uuid": "GPU-1"}, id=3)


@pytest.mark.parametrize("action", ["drain_node", "reboot_node", "replace_node"])
def test_a_step_that_evicts_the_pods_of_a_paused_namespace_is_blocked(action):
    config = _config([{"type": action, "params": NODE}])
    d = decide(INCIDENT, config.rules, [], CLUSTER, config.safety, SafetyState(), NOW, repair=config.repair)
    assert d.outcome == "wait" and d.reason == "paused", d.trace
    assert "payments" in d.detail


@pytest.mark.parametrize("action", ["reboot_node", "replace_node"])
def test_the_same_step_on_a_node_without_paused_pods_acts(action):
    config = _config([{"type": action, "params": NODE}])
    other = Incident("cd34", INCIDENT.starts_at, dict(INCIDENT.labels, node="n2"), id=4)
    d = decide(other, config.rules, [], CLUSTER, config.safety, SafetyState(), NOW, repair=config.repair)
    assert d.outcome == "act", d.trace


def test_an_on_failure_reboot_is_held_by_the_paused_namespace_too():
    config = _config([{"type": "cordon_node", "params": NODE}], on_failure=[{"type": "reboot_node", "params": NODE}])
    world = World(CLUSTER, (), config.safety, SafetyState(), NOW, repair=config.repair)
    d = plan_on_failure(INCIDENT, config.rules[0], 0, world)
    assert d.outcome == "wait" and d.reason == "paused", d.trace


@pytest.mark.parametrize("where", ["actions", "on_failure"])
def test_serve_watches_pods_and_namespaces_for_every_step_that_evicts(where):
    from remediator.cli import cache_needs

    cordon = [{"type": "cordon_node", "params": NODE}]
    reboot = [{"type": "reboot_node", "params": NODE}]
    config = _config(reboot, None) if where == "actions" else _config(cordon, reboot)
    needs = cache_needs(config)
    assert needs.pods and needs.namespaces, needs


def test_a_noexecute_taint_empties_the_node_too():
    """A NoExecute taint makes the taint manager delete every pod that does not tolerate it: for the
    paused rail it is a drain (a NoSchedule taint is not)."""
    execute = _config([{"type": "taint_node", "params": {**NODE, "key": "vigil.io/bad", "effect": "NoExecute"}}])
    d = decide(INCIDENT, execute.rules, [], CLUSTER, execute.safety, SafetyState(), NOW)
    assert d.outcome == "wait" and d.reason == "paused", d.trace
    schedule = _config([{"type": "taint_node", "params": {**NODE, "key": "vigil.io/bad", "effect": "NoSchedule"}}])
    assert decide(INCIDENT, schedule.rules, [], CLUSTER, schedule.safety, SafetyState(), NOW).outcome == "act"
    assert cache_needs_of(execute).pods and not cache_needs_of(schedule).pods


def cache_needs_of(config):
    from remediator.cli import cache_needs

    return cache_needs(config)
