"""A step waiting for approval survives a failover: two `remediator serve` replicas on the Kubernetes
ledger; the leader cordons and drains and asks for approval, then is SIGKILLed; the other replica
leads, does not ask again, takes the answer (`remediator approve` against it) and runs the step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from kubernetes import client

from tests.k8s.controlplane import add_gpu_nodes, wait_until
from tests.remediator.payloads import alert, body, xid_labels
from tests.remediator.replicas import TOKEN, Replicas

pytestmark = pytest.mark.k8s
NODE = "{{ labels.node }}"
KEY = "vigil.io/approved-maintenance"


def test_a_step_waiting_for_approval_is_approved_through_the_next_leader(vigil_crds_cluster, tmp_path, unique):
    cp = vigil_crds_cluster
    api = cp.api_client()
    core = client.CoreV1Api(api)
    pool, ns = f"apf-{unique}", f"vigil-{unique}"
    nodes = [f"{pool}-n{i}" for i in range(2)]
    add_gpu_nodes(api, nodes, pool=pool)
    core.create_namespace({"metadata": {"name": ns}})
    selector = f"vigil.io/pool={pool}"
    wait_until(lambda: all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                           and not n.spec.taints for n in core.list_node(label_selector=selector).items), 120,
               what="nodes Ready")
    reps = Replicas(tmp_path, {
        "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
        "ledger": {"backend": "kubernetes", "namespace": ns},
        "kubernetes": {"kubeconfig": str(cp.kubeconfig), "node_selector": selector},
        "leader_election": {"namespace": ns, "lease_duration": "6s", "renew_deadline": "4s", "retry_period": "1s"},
        "engine": {"reconcile_interval": "2s"},
        "safety": {"max_alert_age": "1h", "budget": {"max_nodes": 2, "min_nodes": 1}},
        "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                                          {"type": "drain_node", "params": {"node": NODE, "timeout": "20s"}},
                                          {"type": "taint_node", "params": {"node": NODE, "key": KEY},
                                           "approval": "required"}]}]},
    })
    node = nodes[0]
    try:
        for i in range(2):
            reps.start(f"r{i}")
        leader = reps.wait_leader()
        assert leader.post(body(alert(xid_labels(node)))).status_code == 200

        def awaiting() -> dict | None:
            items = [i for i in leader.incidents() if i["status"] == "waiting" and i["reason"] == "approval"]
            return leader.incident(items[0]["id"]) if items else None
        inc = wait_until(awaiting, 60, what="the incident waiting for approval")
        assert core.read_node(node).spec.unschedulable and KEY not in [t.key for t in core.read_node(node).spec.taints
                                                                         or []]
        leader.kill()  # the leader dies with the request open
        survivor = reps.wait_leader(30)
        assert survivor is not leader

        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        r = subprocess.run([sys.executable, "-m", "remediator.cli", "approve", str(inc["id"]), "--reason",
                            "checked after the failover"], capture_output=True, text=True, timeout=60,
                           env={**env, "VIGIL_URL": survivor.url, "VIGIL_TOKEN": TOKEN})
        assert r.returncode == 0, r.stderr
        assert f"taint_node({node}) approved by" in r.stdout

        done = wait_until(lambda: (i := survivor.incident(inc["id"]))["status"] == "succeeded" and i, 60,
                          what="the approved step run by the new leader")
        assert KEY in [t.key for t in core.read_node(node).spec.taints or []]
        events = [e["event"] for e in done["audit"]]
        assert events.count("approval_requested") == 1, "the new leader did not ask again"
        assert events.count("approved") == 1
    finally:
        reps.stop_all()
