"""Scope for every target: namespaces (kubernetes.namespaces, the system namespaces and Vigil's own
excluded by default), node_selector for pod actions too, rules that narrow but never widen, and
quarantine_pod's availability check on the workload whether or not a Service selects the pod.
Pure: the rails on a ClusterView, and the config."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from remediator.config import ConfigError, parse_config
from remediator.domain import rails
from remediator.domain.decide import plan_step
from remediator.domain.models import ClusterView, Incident, NodeView, PlannedAction, PodView, SafetyState, WorkloadView
from remediator.domain.scope import Namespaces, Scope

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
ACTIONS = {
    "restart_pod": {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"},
    "quarantine_pod": {"namespace": "{{ labels.namespace }}", "pod": "{{ labels.pod }}"},
    "shift_traffic": {"namespace": "{{ labels.namespace }}", "route": "r", "from": "a", "to": "b"},
    "rollout_restart": {"namespace": "{{ labels.namespace }}", "name": "w"},
    "failover_service": {"namespace": "{{ labels.namespace }}", "service": "s", "selector": {"zone": "b"}},
}


def config(kubernetes: dict | None = None, scope: dict | None = None, **extra):
    rule = {"name": "r", "match": ['alertname="A"'], "actions": []}
    if scope is not None:
        rule["scope"] = scope
    rules = [{**rule, "name": t, "actions": [{"type": t, "params": p}]} for t, p in ACTIONS.items()]
    return parse_config({"kubernetes": kubernetes or {}, "policy": {"rules": rules}, **extra})


def cluster(ns: str = "ml", node_managed: bool = True, replicas: int = 3, services: tuple = ()) -> ClusterView:
    nodes = {"n0": NodeView("n0", managed=node_managed), "n1": NodeView("n1")}
    pods = {f"{ns}/p{i}": PodView(f"Deployment/{ns}/w", node="n0" if i == 0 else "n1", services=services)
            for i in range(replicas)}
    return ClusterView(nodes, pods=pods, workloads={f"Deployment/{ns}/w": WorkloadView(replicas, replicas)},
                       service_endpoints={s: frozenset(pods) for s in services})


def verdict(cfg, action: str, ns: str = "ml", view: ClusterView | None = None):
    rule = next(r for r in cfg.rules if r.name == action)
    params = {k: v.replace("{{ labels.namespace }}", ns).replace("{{ labels.pod }}", "p0") if isinstance(v, str)
              else v for k, v in ACTIONS[action].items()}
    target = f"{ns}/p0" if action.endswith("_pod") else f"{ns}/{params.get('route') or params.get('name') or 's'}"
    step = rails.Step("first", Incident("f", NOW, {"alertname": "A"}, {}, id=1), rule,
                      (PlannedAction(action, target, params, workload=f"Deployment/{ns}/w"),))
    world = rails.World(view or cluster(ns), [], cfg.safety, SafetyState(), NOW, needs_cluster=True)
    return rails.target(step, world), plan_step(step, world)


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("ns", ["kube-system", "kube-public", "kube-node-lease"])
def test_system_namespaces_are_outside_scope_by_default(action, ns):
    v, d = verdict(config(), action, ns)
    assert not v.passed and v.reason == "outside_scope"
    assert f"namespace {ns} is a system namespace, excluded by default" in v.line
    assert d.outcome == "blocked" and d.reason == "outside_scope"


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_system_namespace_named_in_include_is_in_scope(action):
    v, _ = verdict(config({"namespaces": {"include": ["kube-system"]}}), action, "kube-system")
    assert v.passed, v.line


def test_vigils_own_namespaces_are_excluded_by_default():
    cfg = config(ledger={"backend": "kubernetes", "namespace": "vigil-ops"},
                 leader_election={"namespace": "vigil-lease"})
    assert cfg.safety.scope.own_namespaces == ("vigil-ops", "vigil-lease")
    for ns in ("vigil-ops", "vigil-lease"):
        v, _ = verdict(cfg, "restart_pod", ns)
        assert v.reason == "outside_scope" and "Vigil's own namespace" in v.line
    assert verdict(cfg, "restart_pod", "ml")[0].passed


@pytest.mark.parametrize(("namespaces", "ns", "rule_text"), [
    ({"exclude": ["ml"]}, "ml", "namespace ml is in kubernetes.namespaces.exclude"),
    ({"include": ["web"]}, "ml", "namespace ml is not in kubernetes.namespaces.include (web)"),
    ({"include": ["ml"], "exclude": ["ml"]}, "ml", "namespace ml is in kubernetes.namespaces.exclude"),
])
def test_include_and_exclude_name_the_scope_rule(namespaces, ns, rule_text):
    v, _ = verdict(config({"namespaces": namespaces}), "shift_traffic", ns)
    assert v.reason == "outside_scope" and rule_text in v.line, v.line


def test_a_rule_narrows_scope():
    cfg = config(scope={"namespaces": {"include": ["web"]}})
    v, _ = verdict(cfg, "restart_pod", "ml")
    assert v.reason == "outside_scope" and "rule restart_pod: scope.namespaces.include (web)" in v.line
    assert verdict(cfg, "restart_pod", "web")[0].passed
    v, _ = verdict(config(scope={"namespaces": {"exclude": ["ml"]}}), "rollout_restart", "ml")
    assert v.reason == "outside_scope" and "rule rollout_restart: scope.namespaces.exclude" in v.line


@pytest.mark.parametrize(("kubernetes", "ns"), [
    ({}, "kube-system"), ({"namespaces": {"exclude": ["ml"]}}, "ml"), ({"namespaces": {"include": ["web"]}}, "ml"),
])
def test_a_rule_can_never_widen_scope(kubernetes, ns):
    with pytest.raises(ConfigError, match="never widen it"):
        config(kubernetes, scope={"namespaces": {"include": [ns]}})


def test_a_rule_that_widens_is_refused_at_run_time_too():
    """Built around the config check (a rule made in code): the global scope still applies."""
    cfg = config()
    rule = dataclasses.replace(next(r for r in cfg.rules if r.name == "restart_pod"),
                               namespaces=Namespaces(include=("kube-system",)))
    cfg = dataclasses.replace(cfg, rules=(rule,))
    v, _ = verdict(cfg, "restart_pod", "kube-system")
    assert v.reason == "outside_scope"


@pytest.mark.parametrize("bad", [{"include": "ml"}, {"exclude": [1]}, {"other": []}, ["ml"]])
def test_bad_namespaces_config_is_an_error(bad):
    with pytest.raises(ConfigError, match="namespaces"):
        config({"namespaces": bad})


@pytest.mark.parametrize("action", ["restart_pod", "quarantine_pod"])
def test_a_pod_on_a_node_outside_node_selector_is_outside_scope(action):
    v, d = verdict(config(), action, view=cluster(node_managed=False))
    assert v.reason == "outside_scope" and "runs on node n0, outside kubernetes.node_selector" in v.line
    assert d.outcome == "blocked"


def test_a_pod_on_an_unknown_node_is_outside_scope():
    view = cluster()
    view = dataclasses.replace(view, nodes={"n1": view.nodes["n1"]})
    v, _ = verdict(config(), "restart_pod", view=view)
    assert v.reason == "outside_scope"


@pytest.mark.parametrize("services", [(), ("ml/svc",)], ids=["no-service", "service"])
def test_quarantining_the_last_ready_replica_is_held_back_with_or_without_a_service(services):
    _, d = verdict(config(), "quarantine_pod", view=cluster(replicas=1, services=services))
    assert d.outcome == "wait" and d.reason == "availability"  # held back until a replica is Ready
    assert ("Service ml/svc: quarantining ml/p0 would leave 0 ready endpoints of 1" if services else
            "Deployment/ml/w: quarantining ml/p0 would leave 0 other Ready of 1") in d.detail


def test_quarantining_one_of_three_replicas_without_a_service_passes():
    _, d = verdict(config(), "quarantine_pod", view=cluster(replicas=3))
    assert d.outcome == "act", d.trace


def test_scope_reasons_name_the_rule_text():
    s = Scope(Namespaces(("a", "kube-system")), ("vigil",))
    assert s.refuses("a") == "" and s.refuses("kube-system") == ""
    assert "not in kubernetes.namespaces.include" in s.refuses("vigil")
    assert "Vigil's own namespace" in Scope(own_namespaces=("vigil",)).refuses("vigil")
