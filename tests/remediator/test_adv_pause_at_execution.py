"""Adversarial: a plan that is in the ledger but has not run yet (the process stopped after the
decision, or the chain is still working through a long drain) must not change the cluster once
remediation is paused, or once the operator restarted Vigil in dry-run. The engine resumes
planned actions when it starts; before this fix they ran whatever the pause or dry-run said.
Real ledger, real engine, real Kubernetes API server (no mocks)."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from kubernetes import client

from remediator.cluster.kube import Kube
from remediator.cluster.view import read_cluster_view
from remediator.config import parse_config
from remediator.domain.decide import decide
from remediator.domain.models import SafetyState
from remediator.domain.payload import parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from tests.k8s.controlplane import add_gpu_nodes, wait_until

from .payloads import alert, body, xid_labels

POLICY = {"rules": [{"name": "xid-cordon", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}


def _config(tmp_path, k8s_api, pool: str, *, dry_run: bool):
    os.environ["VIGIL_ADV_TOKEN"] = "adv-token-0123456789"
    return parse_config({"auth": {"bearer_token_env": "VIGIL_ADV_TOKEN"},
                         "ledger": {"path": str(tmp_path / "ledger.db")},
                         "kubernetes": {"kubeconfig": str(k8s_api.kubeconfig),
                                        "node_selector": f"vigil.io/pool={pool}"},
                         "safety": {"dry_run": dry_run, "budget": {"max_nodes": 10, "min_nodes": 1}},
                         "policy": POLICY}, "adv.yaml")


def _planned_but_not_run(config, ledger, kube, node: str) -> int:
    """What the engine does up to the moment it would run the action: record, decide, store."""
    raw = json.dumps(body(alert(xid_labels(node), starts_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))))
    now = dt.datetime.now(dt.UTC)
    ledger.record(parse(raw.encode()).alerts, now)
    [incident] = ledger.due(now)
    decision = decide(incident, config.rules, ledger.history(now - dt.timedelta(hours=1)), read_cluster_view(kube),
                      config.safety, SafetyState(), now)
    assert decision.outcome == "act", decision.trace
    assert ledger.save_decision(incident.id, decision, now)
    return incident.id


@pytest.fixture
def setup(k8s_api, tmp_path, unique):
    pool = f"adv-{unique}"
    node = f"{pool}-n0"
    add_gpu_nodes(k8s_api.api_client(), [node], pool=pool)
    made = []

    def start(*, dry_run: bool, pause: bool, node_patch: dict | None = None):
        config = _config(tmp_path, k8s_api, pool, dry_run=False)
        ledger = SQLiteLedger(config.ledger_path)
        kube = Kube(config.kubeconfig, node_selector=config.node_selector)
        incident_id = _planned_but_not_run(config, ledger, kube, node)
        ledger.close()  # the process stops here
        if node_patch is not None:  # meanwhile the operator pauses the node, or moves it to another pool
            client.CoreV1Api(k8s_api.api_client()).patch_node(node, node_patch)
        config = _config(tmp_path, k8s_api, pool, dry_run=dry_run)  # the operator restarts it, maybe in dry-run
        ledger = SQLiteLedger(config.ledger_path)
        metrics = Metrics(ledger.counts_by_status)
        engine = Engine(config, ledger, Kube(config.kubeconfig, node_selector=config.node_selector), metrics)
        if pause:
            engine.set_paused(True, dt.datetime.now(dt.UTC), by="oncall", reason="storm")
        made.append((engine, ledger))
        engine.start()
        return engine, ledger, incident_id

    yield node, start
    for engine, ledger in made:
        engine.stop()
        ledger.close()


def _settled(ledger, incident_id: int) -> dict:
    def done():
        inc = ledger.get_incident(incident_id)
        return inc if inc["actions"] and all(a["state"] not in ("planned", "running") for a in inc["actions"]) \
            else None
    return wait_until(done, 60, what="the planned action to be settled")


@pytest.mark.parametrize(("dry_run", "pause", "reason"), [(False, True, "paused"), (True, False, "dry_run")])
def test_a_planned_action_does_not_run_after_pause_or_dry_run(k8s_api, setup, dry_run, pause, reason):
    node, start = setup
    _engine, ledger, incident_id = start(dry_run=dry_run, pause=pause)
    inc = _settled(ledger, incident_id)
    assert not client.CoreV1Api(k8s_api.api_client()).read_node(node).spec.unschedulable, \
        f"the node was cordoned although remediation was {reason}"
    [action] = inc["actions"]
    if reason == "paused":  # a pause holds the plan back: it waits in the queue and goes on after the resume
        assert action["state"] == "cancelled" and action["result"]["reason"] == "paused", action
        assert inc["status"] == "waiting" and inc["reason"] == "paused", inc
    else:  # dry-run turned on after the plan: refused
        assert action["state"] == "blocked" and action["result"]["reason"] == reason, action
        assert inc["status"] == "blocked" and inc["reason"] == reason, inc


def test_a_planned_action_still_runs_when_nothing_stops_it(k8s_api, setup):
    node, start = setup
    _engine, ledger, incident_id = start(dry_run=False, pause=False)
    inc = _settled(ledger, incident_id)
    assert inc["actions"][0]["state"] == "succeeded", inc["actions"]
    assert client.CoreV1Api(k8s_api.api_client()).read_node(node).spec.unschedulable


@pytest.mark.parametrize(("patch", "reason"), [
    ({"metadata": {"annotations": {"vigil.io/remediation": "disabled"}}}, "paused"),
    ({"metadata": {"labels": {"vigil.io/pool": "elsewhere"}}}, "outside_node_selector"),
])
def test_a_planned_action_rechecks_its_node_before_it_runs(k8s_api, setup, patch, reason):
    """The same holds for what can change on the node itself between the plan and the run: a pause
    annotation, or the node leaving node_selector (also the path of a chain's later steps)."""
    node, start = setup
    _engine, ledger, incident_id = start(dry_run=False, pause=False, node_patch=patch)
    inc = _settled(ledger, incident_id)
    assert not client.CoreV1Api(k8s_api.api_client()).read_node(node).spec.unschedulable
    [action] = inc["actions"]
    if reason == "paused":  # the node's pause annotation can be lifted: the plan waits
        assert action["state"] == "cancelled" and action["result"]["reason"] == reason, action
        assert inc["status"] == "waiting", inc
    else:  # outside node_selector: refused
        assert action["state"] == "blocked" and action["result"]["reason"] == reason, action
