"""Leader failover on the local cluster: two remediator replicas on the Kubernetes ledger with the
default lease (15 s / 10 s / 2 s). The leader is SIGKILLed and an XID incident is sent to the
survivor at once: the time to its cordon is the failover, against lease duration + 2 s. The same
with SIGTERM, where the leader releases the lease and a follower takes over in about retry_period."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kubernetes import client

from tests.k8s.controlplane import add_gpu_nodes, start, wait_until
from tests.remediator.ledgers import apply_crds
from tests.remediator.payloads import alert, body, xid_labels
from tests.remediator.replicas import Replicas

LEASE = 15.0


def _config(cp, ns: str) -> dict:
    return {"auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
            "ledger": {"backend": "kubernetes", "namespace": ns},
            "kubernetes": {"kubeconfig": str(cp.kubeconfig), "node_selector": "vigil.io/pool=bench"},
            "leader_election": {"namespace": ns, "lease_duration": f"{LEASE:g}s"},
            "safety": {"budget": {"max_nodes": 10}, "breaker": {"max_actions": 100}},
            "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                                  "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}}


def _failover(reps: Replicas, core, node: str, *, kill: bool) -> float:
    leader = reps.wait_leader()
    survivor = next(r for r in reps.alive() if r is not leader)
    t0 = time.monotonic()
    if kill:
        leader.kill()
    else:
        leader.stop()
    assert survivor.post(body(alert(xid_labels(node)))).status_code == 200
    wait_until(lambda: core.read_node(node).spec.unschedulable, 120, interval=0.05, what=f"{node} cordoned")
    return time.monotonic() - t0


def run(*, smoke: bool = False) -> list[tuple[str, str, str, str]]:
    """Two failovers are already the smallest run: smoke runs it whole."""
    del smoke
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-failover-"))
    cp = start(work / "k8s", "cluster")
    reps = None
    try:
        apply_crds(cp)
        api = cp.api_client()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "vigil"}})
        add_gpu_nodes(api, ["bench-0", "bench-1"], pool="bench")
        reps = Replicas(work, _config(cp, "vigil"))
        for name in ("a", "b", "c"):
            reps.start(name)
        killed = _failover(reps, core, "bench-0", kill=True)
        released = _failover(reps, core, "bench-1", kill=False)
    finally:
        if reps is not None:
            reps.stop_all()
        cp.stop()
    return [("leader SIGKILLed -> first action by the new leader (lease 15 s)", f"{killed:.1f} s",
             f"<= {LEASE + 2:g} s", "yes" if killed <= LEASE + 2 else "no"),
            ("leader SIGTERMed (lease released) -> first action by the new leader", f"{released:.1f} s",
             "<= 4 s (retry_period 2 s)", "yes" if released <= 4 else "no")]


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row))
