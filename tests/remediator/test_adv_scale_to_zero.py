"""Adversarial: the availability rail (a rule's min_available, default 1: never the last healthy
replica) held restart_pod and quarantine_pod, but a scale_deployment step (a fixed `replicas`, or
a negative `step`, both within the action's own min, which defaults to 0) scaled a serving
Deployment to zero. A scale-down below min_available is blocked (reason availability); a rule
that means to scale to zero says min_available: 0. Pure core and the real config parser."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.cli import cache_needs
from remediator.config import parse_config
from remediator.domain.decide import decide
from remediator.domain.models import ClusterView, Incident, PodView, SafetyState, WorkloadView

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
WL = {"namespace": "ml", "name": "llm"}
CLUSTER = ClusterView(pods={f"ml/llm-{i}": PodView(workload="Deployment/ml/llm", node=f"n{i}") for i in range(2)},
                      workloads={"Deployment/ml/llm": WorkloadView(desired=2, ready=2)})
INCIDENT = Incident("ab12", NOW - dt.timedelta(minutes=5), {"alertname": "LlmIdle"}, id=5)


def _config(params: dict, **rule):
    return parse_config({"policy": {"rules": [{"name": "scale", "match": ['alertname="LlmIdle"'],
                                               "actions": [{"type": "scale_deployment", "params": {**WL, **params}}],
                                               **rule}]}}, "adv.yaml")


def _decide(config):
    return decide(INCIDENT, config.rules, [], CLUSTER, config.safety, SafetyState(), NOW)


@pytest.mark.parametrize("params", [{"replicas": 0}, {"step": -2}, {"step": -5, "min": 0}, {"replicas": "0"}])
def test_a_scale_down_to_zero_is_blocked_by_availability(params):
    d = _decide(_config(params))
    assert d.outcome == "wait" and d.reason == "availability", d.trace
    assert "Deployment/ml/llm" in d.detail


@pytest.mark.parametrize(("params", "rule"), [({"step": -1}, {}), ({"replicas": 4}, {}), ({"step": 2}, {}),
                                              ({"replicas": 0}, {"min_available": 0}),
                                              ({"step": -1}, {"min_available": "50%"})])
def test_what_keeps_min_available_still_acts(params, rule):
    d = _decide(_config(params, **rule))
    assert d.outcome == "act", d.trace


def test_serve_watches_workloads_for_scale_rules():
    assert cache_needs(_config({"step": -1})).services
