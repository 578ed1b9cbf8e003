"""Two replicas misconfigured with separate SQLite ledgers, both sent the same notifications (as two
Alertmanager peers would, in a different order): before leader election this drained every node
twice and took 4 nodes out against a budget of 2. Now only the lease holder decides and acts."""

from __future__ import annotations

import pytest
import requests
from kubernetes import client

from tests.k8s.controlplane import add_gpu_nodes, wait_until
from tests.remediator.conftest import BASE_POLICY
from tests.remediator.payloads import alert, body, xid_labels
from tests.remediator.replicas import Replicas, node_events

pytestmark = pytest.mark.k8s
FINAL = ("succeeded", "failed", "blocked", "cancelled", "ignored", "waiting")  # decided (held work waits)


def ha_config(cp, *, pool: str, ns: str, max_nodes: int) -> dict:
    return {
        "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
        "kubernetes": {"kubeconfig": str(cp.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "leader_election": {"namespace": ns, "name": "vigil-remediator"},
        "safety": {"max_alert_age": "1h", "budget": {"max_nodes": max_nodes, "min_nodes": 1},
                   "breaker": {"max_actions": 1000, "window": "5m"}},
        "policy": BASE_POLICY,
    }


def make_pool(cp, pool: str, n: int) -> list[str]:
    api = cp.api_client()
    names = [f"{pool}-n{i}" for i in range(n)]
    add_gpu_nodes(api, names, pool=pool)
    core = client.CoreV1Api(api)
    wait_until(lambda: all(any(c.type == "Ready" and c.status == "True"
                               for c in core.read_node(x).status.conditions or []) for x in names), 60,
               what="nodes Ready")
    return names


def test_two_sqlite_replicas_only_the_lease_holder_acts(k8s_cluster, tmp_path, unique):
    core = client.CoreV1Api(k8s_cluster.api_client())
    pool, ns = f"ha-{unique}", f"vigil-{unique}"
    nodes = make_pool(k8s_cluster, pool, 6)
    core.create_namespace({"metadata": {"name": ns}})
    reps = Replicas(tmp_path, ha_config(k8s_cluster, pool=pool, ns=ns, max_nodes=2))
    try:
        a = reps.start("a", {"ledger": {"path": str(tmp_path / "a.db")}})
        b = reps.start("b", {"ledger": {"path": str(tmp_path / "b.db")}})
        leader = reps.wait_leader()
        follower = b if leader is a else a
        payloads = [body(alert(xid_labels(n))) for n in nodes]
        for p in payloads:  # every notification to both, in opposite orders
            assert a.post(p).status_code == 200
        for p in reversed(payloads):
            assert b.post(p).status_code == 200

        def decided() -> list[dict] | None:
            items = leader.incidents()
            return items if len(items) == 6 and all(i["status"] in FINAL for i in items) else None
        items = wait_until(decided, 90, what="the leader decided all 6")
        assert sorted(i["status"] for i in items) == ["succeeded"] * 2 + ["waiting"] * 4, items  # held: budget
        cordoned = [n for n in nodes if core.read_node(n).spec.unschedulable]
        assert len(cordoned) == 2, "the budget of 2 nodes held across both replicas"
        assert node_events(core, "default", "VigilCordon", nodes) == {n: 1 for n in cordoned}, \
            "each cordon exactly once"
        assert {i["status"] for i in follower.incidents()} == {"pending"}, "the follower recorded, never decided"
        assert all(not follower.incident(i["id"])["actions"] for i in follower.incidents())
        assert follower.state()["leader"] is False and follower.state()["lease_holder"] == leader.state()["identity"]
        metrics = {r.name: requests.get(f"{r.url}/metrics", timeout=5).text for r in (leader, follower)}
        assert "vigil_leader 1.0" in metrics[leader.name] and "vigil_leader 0.0" in metrics[follower.name]
        lease = client.CoordinationV1Api(k8s_cluster.api_client()).read_namespaced_lease("vigil-remediator", ns)
        assert lease.spec.holder_identity == leader.state()["identity"]
        leader.stop()  # graceful: releases the lease, so the follower takes over in about retry_period
        assert wait_until(lambda: (follower.state() or {}).get("leader"), 10, what="the follower takes over")
    finally:
        reps.stop_all()
