"""Adversarial: the resolve that arrives between planning a later step and running it. An
escalation (or on_failure) step is planned through the rails while the alert fires; if the
resolved notification is recorded before the step is appended to the ledger, nothing cancels it
(a resolve cancels only the actions planned at that moment) and the runner ran it on a resolved
alert. "Vigil never acts on a resolved alert": the runner cancels a planned action whose alert has
resolved. The interleaving is played in that order on the real ledger and API server."""

from __future__ import annotations

import datetime as dt
import json
import os

from kubernetes import client

from remediator.cluster.kube import Kube
from remediator.config import parse_config
from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from tests.k8s.controlplane import add_gpu_nodes

from .payloads import alert, body, xid_labels


def test_a_step_appended_after_the_resolve_does_not_run(k8s_api, tmp_path, unique):
    pool = f"adv-{unique}"
    node, other = f"{pool}-n0", f"{pool}-n1"
    add_gpu_nodes(k8s_api.api_client(), [node, other], pool=pool)
    os.environ["VIGIL_ADV_TOKEN"] = "adv-token-0123456789"
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_ADV_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
        "kubernetes": {"kubeconfig": str(k8s_api.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "taint_node", "params": {"node": "{{ labels.node }}"}}]}]}},
        "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    engine = Engine(config, ledger, Kube(config.kubeconfig, node_selector=config.node_selector),
                    Metrics(ledger.counts_by_status))
    core = client.CoreV1Api(k8s_api.api_client())
    try:
        firing = alert(xid_labels(node), starts_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))
        now = dt.datetime.now(dt.UTC)
        ledger.record(parse(json.dumps(body(firing)).encode()).alerts, now)
        [incident] = ledger.due(now)
        [first] = ledger.save_decision(incident.id, Decision("act", "xid", (
            PlannedAction("taint_node", node, {"node": node}),)), now)
        assert engine.run_action(incident.id, first).state == "succeeded"
        # the escalation step was planned (alert firing) ... then the resolve is recorded ...
        resolved = dict(firing, status="resolved", endsAt=dt.datetime.now(dt.UTC).isoformat())
        ledger.record(parse(json.dumps(body(resolved)).encode()).alerts, dt.datetime.now(dt.UTC))
        # ... and only then is the step appended and run
        step = ledger.append_action(incident.id, "xid", "cordon_node", other, {"node": other}, dt.datetime.now(dt.UTC))
        outcome = engine.run_action(incident.id, step)
        assert not core.read_node(other).spec.unschedulable, "a step ran after the alert resolved"
        assert outcome is None or outcome.state != "succeeded"
        inc = ledger.get_incident(incident.id)
        assert inc["actions"][-1]["state"] == "cancelled", inc["actions"][-1]
    finally:
        ledger.close()
