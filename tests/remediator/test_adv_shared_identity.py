"""Adversarial: `leader_election.identity` set in vigil.yaml, which every replica of a Deployment
reads from the same ConfigMap. Each replica then found its own name as the Lease's holder, renewed
"its" lease and acted: several leaders, each with its own budget. The configured identity is a
prefix; each process adds its own suffix, so one replica leads. Real Lease on a real API server."""

from __future__ import annotations

from remediator.cluster.kube import Kube
from remediator.config import parse_config
from remediator.ha import elector


def test_replicas_sharing_a_configured_identity_never_both_lead(k8s_api, tmp_path, unique):
    config = parse_config({"kubernetes": {"kubeconfig": str(k8s_api.kubeconfig)},
                           "leader_election": {"namespace": "default", "name": f"vigil-{unique}",
                                               "identity": "vigil-remediator"},
                           "policy": {"rules": []}}, "adv.yaml")
    a = elector(config, Kube(config.kubeconfig), lambda leading: None)
    b = elector(config, Kube(config.kubeconfig), lambda leading: None)
    assert a.identity != b.identity
    assert a.identity.startswith("vigil-remediator") and b.identity.startswith("vigil-remediator")
    leading = [a.step(), b.step(), a.step(), b.step()]
    assert leading == [True, False, True, False], leading
    assert a.is_leader() and not b.is_leader()
