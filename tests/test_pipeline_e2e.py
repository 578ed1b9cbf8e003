"""The whole pipeline, end to end: an XID on a simulated GPU takes its node through the repair loop
(cordon, drain, reboot, validate, uncordon), through the fast path and through the pull path."""

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
        incidents = [i for i in p.incidents() if i["alertname"] == "GpuXidCritical"]
        assert len(incidents) == 2, "one incident per node: the push and the rule's alert merged"
        wait_until(lambda: all(i["status"] == "succeeded" for i in p.incidents()
                               if i["alertname"] == "GpuXidCritical"), 60, what="incidents succeeded")
        for inc in incidents:  # the whole repair loop: out, drained, rebooted, validated, back in service
            actions = p.incident(inc["id"])["actions"]
            assert [(a["type"], a["state"]) for a in actions] == [
                (t, "succeeded") for t in ("cordon_node", "drain_node", "reboot_node", "validate_node",
                                           "uncordon_node")]
            assert actions[1]["result"]["evicted"], "the drain moved the node's pods"
            assert actions[2]["result"]["silence_id"] and actions[3]["result"]["silences_expired"]
            assert not core.read_node(inc["labels"]["node"]).spec.unschedulable
        assert not [i for i in p.incidents() if i["alertname"] == "GpuRecoveryActionRequired"
                    and i["status"] not in ("ignored", "cancelled")], "one repair per fault, not two"
        assert p.route_weights() == {"llm-zone-a": 50, "llm-zone-b": 50}
        lat = p.latency_timeline()
        print(f"latency burn in zone A: firing {lat.hop(lat.firing)}, traffic shifted {lat.hop(lat.acted)}")
        assert lat.acted, "the latency burn moved the traffic"
        assert p.route_weights() == {"llm-zone-a": 0, "llm-zone-b": 100}
    finally:
        p.stop()
