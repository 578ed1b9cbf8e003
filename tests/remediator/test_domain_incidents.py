"""Topology-aware remediation on the real local cluster, through the webhook: two NVLink domains of
4 kwok nodes labelled like GPU Feature Discovery (`nvidia.com/gpu.clique`). Faults on 3 members of
one domain within the window open one domain incident (cordon and drain the whole domain) and no
per-node reboot; a single fault elsewhere runs its normal ladder; `max_domains: 1` keeps a second
degraded domain waiting in the queue."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from kubernetes import client

from remediator.domain.topology import DOMAIN_ALERT
from tests.k8s.controlplane import wait_until

from .conftest import Harness
from .payloads import alert, body, xid_labels
from .repair_env import install_crds
from .test_repair_ladders import FAST_JOBS, NODE, _ladder, _reboot_agent

pytestmark = pytest.mark.k8s
CLIQUE = "nvidia.com/gpu.clique"
TOPOLOGY = {
    "topology": {"domains": [{"kind": "nvlink", "label": CLIQUE}], "window": "10m"},
    "safety": {"budget": {"max_nodes": 6, "domains": {"nvlink": {"max_domains": 1}}}},
    "engine": {"reconcile_interval": "2s"},
    "repair": FAST_JOBS,
}
DOMAIN_RULES = [{"name": "nvlink-domain", "match": [f'alertname="{DOMAIN_ALERT}"', 'domain_kind="nvlink"'],
                 "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                             {"type": "drain_node", "params": {"node": NODE, "timeout": "20s"}}],
                 "on_resolved": {"uncordon": True}}]


def _domains(h: Harness) -> dict[str, list[str]]:
    """Label the harness's 8 nodes as two cliques of 4, as GFD would."""
    cliques = {f"{h.pool}.A": h.nodes[:4], f"{h.pool}.B": h.nodes[4:]}
    for clique, names in cliques.items():
        for n in names:
            h.core.patch_node(n, {"metadata": {"labels": {CLIQUE: clique}}})
    return cliques


def _start(remediator, k8s_cluster) -> tuple[Harness, dict[str, list[str]]]:
    install_crds(k8s_cluster)
    policy = {**_ladder(), "domain_rules": DOMAIN_RULES}
    h = remediator(nodes=8, policy=policy, overrides=TOPOLOGY)
    cliques = _domains(h)
    # the labels are in the view the engine decides from (a LISTed view is shared for a second)
    wait_until(lambda: all(CLIQUE in h.engine._cluster_view().nodes[n].labels for n in h.nodes), 30,
               what="the engine's view with the clique labels")
    return h, cliques


def _fire(h: Harness, nodes: list[str]) -> dict:
    """The faults within seconds of each other, in one notification (Alertmanager groups them)."""
    payload = body(*(alert(xid_labels(n)) for n in nodes))
    assert h.post(payload).status_code == 200
    return payload


def _resolve(h: Harness, payload: dict) -> None:
    now = dt.datetime.now(dt.UTC).isoformat()
    alerts = [dict(a, status="resolved", endsAt=now) for a in payload["alerts"]]
    assert h.post(dict(payload, status="resolved", alerts=alerts)).status_code == 200


def _reboot_jobs(h: Harness, nodes: list[str]) -> list:
    return [j for j in client.BatchV1Api(h.api).list_namespaced_job("vigil-repair").items
            if j.spec.template.spec.node_name in nodes and "reboot" in j.metadata.name]


def _domain_incidents(h: Harness) -> list[dict]:
    return [i for i in h.incidents(limit=500) if i["alertname"] == DOMAIN_ALERT]


def test_three_member_faults_open_one_domain_incident_and_no_node_reboot(remediator, k8s_cluster):
    h, cliques = _start(remediator, k8s_cluster)
    members = cliques[f"{h.pool}.A"]
    _fire(h, members[:3])
    [domain] = wait_until(lambda: [i for i in _domain_incidents(h) if i["status"] == "succeeded"] or None, 90,
                          what="the domain incident's ladder done")
    detail = h.incident(domain["id"])
    assert [(a["type"], a["target"], a["state"]) for a in detail["actions"]] == [
        *(("cordon_node", n, "succeeded") for n in members), *(("drain_node", n, "succeeded") for n in members)]
    assert all(h.unschedulable(n) for n in members), "the whole domain is out, the healthy member too"
    assert domain["labels"]["domain"] == f"{h.pool}.A" and domain["labels"]["domain_kind"] == "nvlink"
    evidence = detail["annotations"]["evidence"]
    assert "3 of 4 members faulty" in evidence and all(n in evidence for n in members[:3]), evidence
    assert any(line.startswith("topology: ok: nvlink domain") for line in detail["trace"])
    nodes = [i for i in h.incidents(limit=500) if i["alertname"] != DOMAIN_ALERT]
    assert len(nodes) == 3 and {i["status"] for i in nodes} == {"joined"}, nodes
    assert all(f"domain incident {domain['id']} takes over" in i["detail"] for i in nodes)
    assert not any(a["type"] == "reboot_node" for i in nodes for a in h.incident(i["id"])["actions"])
    assert not _reboot_jobs(h, members), "no per-node reboot requested"
    assert len(_domain_incidents(h)) == 1
    handed = wait_until(lambda: [a for a in h.incident(domain["id"])["audit"] if a["event"] == "handed_over"], 30,
                        what="the hand-over record")
    assert handed[0]["detail"]["evidence"] == evidence and len(handed[0]["detail"]["done"]) == 8, handed
    # the other domain is untouched, and a single fault there runs its normal ladder
    other = cliques[f"{h.pool}.B"][0]
    _reboot_agent(h, other)
    _fire(h, [other])
    inc = wait_until(lambda: [i for i in h.incidents(limit=500) if i["labels"].get("node") == other
                              and i["status"] in ("succeeded", "failed", "blocked")] or None, 90,
                     what="the single fault's ladder done")[0]
    steps = [(a["type"], a["state"]) for a in h.incident(inc["id"])["actions"]]
    assert inc["status"] == "succeeded", steps
    assert [t for t, _ in steps] == ["cordon_node", "drain_node", "reboot_node", "validate_node", "uncordon_node"]
    assert len(_domain_incidents(h)) == 1, "one fault degrades no domain"


def test_max_domains_keeps_a_second_degraded_domain_waiting_in_the_queue(remediator, k8s_cluster):
    h, cliques = _start(remediator, k8s_cluster)
    a, b = cliques[f"{h.pool}.A"], cliques[f"{h.pool}.B"]
    _fire(h, a[:2])
    wait_until(lambda: all(h.unschedulable(n) for n in a), 60, what="domain A out")
    _fire(h, b[:2])
    waiting = wait_until(lambda: [q for q in h.http.get("/api/queue", headers=h.headers).get_json()["items"]
                                  if q["alertname"] == DOMAIN_ALERT] or None, 60, what="domain B's incident queued")
    assert len(waiting) == 1 and waiting[0]["reason"] == "budget", waiting
    assert waiting[0]["target"] == f"{h.pool}.B"
    assert "max_domains 1" in waiting[0]["detail"] and f"{h.pool}.A" in waiting[0]["detail"], waiting
    assert not any(h.unschedulable(n) for n in b), "domain B stays in service while A is out"
    assert len(_domain_incidents(h)) == 2
    assert not _reboot_jobs(h, [*a, *b])


def test_a_domain_incident_resolves_with_its_faults_and_returns_the_members_together(remediator, k8s_cluster):
    h, cliques = _start(remediator, k8s_cluster)
    members = cliques[f"{h.pool}.A"]
    faults = _fire(h, members[:2])
    wait_until(lambda: [i for i in _domain_incidents(h) if i["status"] == "succeeded"], 60, what="domain out")
    assert all(h.unschedulable(n) for n in members)
    _resolve(h, faults)
    [domain] = wait_until(lambda: [i for i in _domain_incidents(h) if i["alert_status"] == "resolved"
                                   and i["after_resolve"]] or None, 60, what="the domain incident resolved")
    wait_until(lambda: not any(h.unschedulable(n) for n in members), 30, what="the members returned together")
    assert "uncordon" in domain["after_resolve"], domain


def test_a_running_member_ladder_stops_when_its_domain_degrades_and_never_undoes_the_domain(remediator,
                                                                                           k8s_cluster):
    """a0's own ladder is rebooting when a1 and a2 fail: the domain incident takes over; a0's ladder
    stops before its validation and uncordon (no second repair, no node returned under the domain)."""
    h, cliques = _start(remediator, k8s_cluster)
    a = cliques[f"{h.pool}.A"]
    _fire(h, a[:1])
    wait_until(lambda: _reboot_jobs(h, a[:1]), 60, what="a0's reboot requested")
    _fire(h, a[1:3])
    [domain] = wait_until(lambda: [i for i in _domain_incidents(h) if i["status"] == "succeeded"] or None, 90,
                          what="the domain incident's ladder done")
    h.core.patch_node_status(a[0], {"status": {"nodeInfo": {"bootID": secrets.token_hex(8)}}})  # a0 is back
    first = wait_until(lambda: [i for i in h.incidents(limit=500) if i["labels"].get("node") == a[0]
                                and i["status"] in ("blocked", "succeeded", "failed")] or None, 90,
                       what="a0's ladder ended")[0]
    steps = [(x["type"], x["state"]) for x in h.incident(first["id"])["actions"]]
    assert first["status"] == "blocked" and first["reason"] == "domain", (first, steps)
    assert ("validate_node", "blocked") in steps and ("uncordon_node", "succeeded") not in steps, steps
    assert f"domain incident {domain['id']} takes over" in first["detail"]
    assert len(_reboot_jobs(h, a)) == 1, "only a0's reboot, requested before the domain degraded"
    assert all(h.unschedulable(n) for n in a), "the domain stays out"
    others = [i for i in h.incidents(limit=500) if i["labels"].get("node") in a[1:3]]
    assert {i["status"] for i in others} == {"joined"}


def test_the_cluster_view_and_cache_name_the_multi_node_job_of_a_pod(remediator, k8s_cluster):
    """A JobSet's pods on two members of a domain: both views name the JobSet (not each child Job),
    so a node step's trace can say which multi-node job taking the node out breaks."""
    from remediator.cluster.cache import ClusterCache, Needs
    from remediator.cluster.kube import Kube
    from remediator.cluster.view import read_cluster_view

    h, cliques = _start(remediator, k8s_cluster)
    a = cliques[f"{h.pool}.A"]
    for i, node in enumerate(a[:2]):
        h.core.create_namespaced_pod(h.namespace, {
            "metadata": {"name": f"train-{i}", "labels": {"jobset.sigs.k8s.io/jobset-name": "train"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "example.invalid/train:1"}]}})
    kube = Kube(h.config.kubeconfig, node_selector=h.config.node_selector)
    cache = ClusterCache(kube, Needs(pods=True))
    cache.start()
    try:
        assert cache.wait_synced(30)
        for view in (read_cluster_view(kube), wait_until(lambda: len([p for k, p in cache.view().pods.items()
                                                                      if k.startswith(h.namespace)]) == 2
                                                         and cache.view(), 30, what="the pods in the cache")):
            pods = {k: p for k, p in view.pods.items() if k.startswith(f"{h.namespace}/")}
            assert {p.job for p in pods.values()} == {f"JobSet/{h.namespace}/train"}, pods
            assert {p.node for p in pods.values()} == set(a[:2])
    finally:
        cache.stop()
