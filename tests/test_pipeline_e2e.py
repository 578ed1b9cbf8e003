"""The whole pipeline, end to end: an XID on a simulated GPU cordons and drains its node, through
the fast path and through the pull path."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.k8s.controlplane import wait_until
from tests.pipeline import Pipeline

pytestmark = [pytest.mark.k8s, pytest.mark.integration]


def test_gpu_faults_cordon_and_a_latency_burn_shifts_traffic(tmp_path):
    p = Pipeline(tmp_path / "pipeline")
    try:
        p.start()
        fast = p.xid_timeline("gpu-node-0")
        pull = p.xid_timeline("gpu-node-2")
        print(f"\nfast path: webhook {fast.hop(fast.received)}, cordon {fast.hop(fast.acted)}; "
              f"pull path: webhook {pull.hop(pull.received)}, cordon {pull.hop(pull.acted)}")
        assert fast.acted and pull.acted, "both nodes were cordoned"
        assert fast.acted - fast.injected < pull.acted - pull.injected
        core = client.CoreV1Api(p.cp.api_client())
        for node in ("gpu-node-0", "gpu-node-2"):
            wait_until(lambda n=node: not [q for q in core.list_namespaced_pod("inference").items
                                           if q.spec.node_name == n and not q.metadata.deletion_timestamp],
                       60, what=f"{node} drained")
        incidents = [i for i in p.incidents() if i["alertname"] == "GpuXidCritical"]
        assert len(incidents) == 2, "one incident per node: the push and the rule's alert merged"
        wait_until(lambda: all(i["status"] == "succeeded" for i in p.incidents()
                               if i["alertname"] == "GpuXidCritical"), 60, what="incidents succeeded")
        assert p.route_weights() == {"llm-zone-a": 50, "llm-zone-b": 50}
        lat = p.latency_timeline()
        print(f"latency burn in zone A: firing {lat.hop(lat.firing)}, traffic shifted {lat.hop(lat.acted)}")
        assert lat.acted, "the latency burn moved the traffic"
        assert p.route_weights() == {"llm-zone-a": 0, "llm-zone-b": 100}
    finally:
        p.stop()
