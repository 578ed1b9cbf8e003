"""Adversarial: an action that failed because the Kubernetes API refused or did not answer says
nothing about the node. The engine continued the rule's on_failure ladder on any failed action,
so an API outage or a missing RBAC permission during a cordon (reason api_error or error) went on
to the ladder's next, more drastic step (in the example policy: replace the node). Unknown is not
failure: only a failure of the node itself (a reboot not seen, a validation or repair Job that
failed) continues the ladder. Real API server: the executor's client carries a token the API
server rejects (401), the cluster view comes from a cache with the real token."""

from __future__ import annotations

import datetime as dt
import json
import os

from kubernetes import client

from remediator.cluster.cache import ClusterCache
from remediator.cluster.kube import Kube
from remediator.config import parse_config
from remediator.domain.decide import decide
from remediator.domain.models import SafetyState
from remediator.domain.payload import parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from tests.k8s.controlplane import add_gpu_nodes

from .payloads import alert, body, xid_labels

NODE = {"node": "{{ labels.node }}"}


def test_an_api_error_does_not_continue_the_ladder(k8s_api, tmp_path, unique):
    pool = f"adv-{unique}"
    node = f"{pool}-n0"
    add_gpu_nodes(k8s_api.api_client(), [node], pool=pool)
    bad = tmp_path / "kubeconfig-bad"
    bad.write_text(k8s_api.kubeconfig.read_text().replace(k8s_api.token, "not-the-token-0123456789"))
    os.environ["VIGIL_ADV_TOKEN"] = "adv-token-0123456789"
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_ADV_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
        "kubernetes": {"kubeconfig": str(bad), "node_selector": f"vigil.io/pool={pool}", "action_deadline": "2s"},
        "safety": {"budget": {"max_nodes": 5}},
        "policy": {"rules": [{"name": "ladder", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": NODE}],
                              "on_failure": {"steps": [{"type": "taint_node", "params": {
                                  **NODE, "key": "vigil.io/replace-me"}}]}}]}}, "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    good = Kube(str(k8s_api.kubeconfig), node_selector=config.node_selector)
    cache = ClusterCache(good)
    cache.start()
    try:
        assert cache.wait_synced(60)
        engine = Engine(config, ledger, Kube(str(bad), node_selector=config.node_selector),
                        Metrics(ledger.counts_by_status), cache=cache)
        now = dt.datetime.now(dt.UTC)
        ledger.record(parse(json.dumps(body(alert(xid_labels(node), starts_at=now - dt.timedelta(seconds=5))))
                            .encode()).alerts, now)
        [incident] = ledger.due(now)
        decision = decide(incident, config.rules, [], cache.view(), config.safety, SafetyState(), now)
        assert decision.outcome == "act", decision.trace
        engine._run_chain(incident.id, ledger.save_decision(incident.id, decision, now))
        inc = ledger.get_incident(incident.id)
        assert [(a["type"], a["state"]) for a in inc["actions"]] == [("cordon_node", "failed")], inc["actions"]
        assert inc["actions"][0]["result"]["reason"] in ("api_error", "error"), inc["actions"][0]["result"]
        assert not [a for a in inc["audit"] if a["event"].startswith("on_failure")], \
            "an API error continued the repair ladder"
        assert not client.CoreV1Api(k8s_api.api_client()).read_node(node).spec.taints or all(
            t.key != "vigil.io/replace-me" for t in client.CoreV1Api(k8s_api.api_client()).read_node(node).spec.taints)
    finally:
        cache.stop()
        ledger.close()
