"""The watch-fed cluster cache: one LIST, then watch events keep the view current; a cordon
incident then costs exactly its GET, PATCH and Event, and no LIST."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import requests
from kubernetes import client

from remediator.cluster.cache import ClusterCache, Needs
from remediator.cluster.kube import Kube
from remediator.cluster.view import read_cluster_view
from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app
from tests.k8s.controlplane import add_gpu_nodes, gpu_node, start, wait_until

from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s


@pytest.fixture
def pool(k8s_cluster, unique):
    name = f"cache-{unique}"
    nodes = [f"{name}-n{i}" for i in range(3)]
    add_gpu_nodes(k8s_cluster.api_client(), nodes, pool=name)
    core = client.CoreV1Api(k8s_cluster.api_client())

    def in_service(n: str) -> bool:  # Ready, and the node lifecycle controller's not-ready taint gone
        node = core.read_node(n)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []) and \
            not node.spec.taints
    wait_until(lambda: all(in_service(n) for n in nodes), 60, what="nodes Ready and untainted")
    yield name, nodes, core
    for n in core.list_node(label_selector=f"vigil.io/pool={name}").items:
        core.delete_node(n.metadata.name)


def test_the_cache_follows_the_cluster_from_one_list(k8s_cluster, pool):
    name, nodes, core = pool
    kube = Kube(str(k8s_cluster.kubeconfig), node_selector=f"vigil.io/pool={name}")
    cache = ClusterCache(kube, Needs(namespaces=True, pods=True, services=True))
    cache.start()
    try:
        assert cache.wait_synced(30)
        view = cache.view()
        assert view.available and sorted(view.managed) == nodes and view.nodes[nodes[0]].gpus == 8
        assert view.nodes[nodes[0]].ready and view.nodes[nodes[0]].labels["vigil.io/pool"] == name
        versions = lambda: tuple(i.version for i in cache.informers)  # noqa: E731
        before, first, again, after = versions(), cache.view(), cache.view(), versions()
        assert again is first or before != after  # no event between: the same view (its budget computed once)
        core.patch_node(nodes[1], {"spec": {"unschedulable": True},
                                   "metadata": {"annotations": {"vigil.io/remediation": "disabled", "other": "x"}}})
        n1 = wait_until(lambda: cache.view().nodes[nodes[1]].unschedulable and cache.view().nodes[nodes[1]], 30,
                        what="the cordon seen through the watch")
        assert n1.annotations == {"vigil.io/remediation": "disabled"}  # only what decisions read
        assert cache.view() is not view and not view.nodes[nodes[1]].unschedulable  # a new view; the old one as it was
        core.create_node(gpu_node(f"{name}-n9", pool=name))
        core.delete_node(nodes[2])
        wait_until(lambda: sorted(cache.view().managed) == [*nodes[:2], f"{name}-n9"], 30,
                   what="add and delete seen")
        core.create_namespace({"metadata": {"name": f"{name}-paused",
                                            "annotations": {"vigil.io/remediation": "disabled"}}})
        wait_until(lambda: f"{name}-paused" in cache.view().paused_namespaces, 30, what="a paused namespace")
        assert all(i.lists == 1 for i in cache.informers)  # listed once; everything since came by watch
        assert cache.staleness() < cache.max_staleness
        wait_until(lambda: _same(cache.view(), read_cluster_view(kube)), 30, what="the same view as the LISTs")
    finally:
        cache.stop()
        core.delete_namespace(f"{name}-paused")
    assert cache.view().available  # a stopped cache keeps its last view until it goes stale


def _vigil_only(view):
    """The cache keeps only Vigil's annotations (the only ones decisions read)."""
    return {n: dataclasses.replace(v, annotations={k: a for k, a in v.annotations.items()
                                                   if k.startswith("vigil.io/")}) for n, v in view.nodes.items()}


def _same(a, b) -> bool:
    return (_vigil_only(a) == _vigil_only(b) and a.paused_namespaces == b.paused_namespaces and a.pods == b.pods
            and a.workloads == b.workloads and a.service_endpoints == b.service_endpoints)


def test_a_cordon_incident_costs_get_patch_event_and_no_list(k8s_cluster, pool, tmp_path, monkeypatch):
    name, nodes, core = pool
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "t")
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"}, "ledger": {"path": str(tmp_path / "ledger.db")},
        "kubernetes": {"kubeconfig": str(k8s_cluster.kubeconfig), "node_selector": f"vigil.io/pool={name}"},
        "safety": {"budget": {"max_nodes": 1, "min_nodes": 0}},
        "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]},
    }, "test.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    kube = Kube(config.kubeconfig, node_selector=config.node_selector)
    cache = ClusterCache(kube)
    metrics.watch_cache(cache.staleness, lambda: {i.res.name: len(i.items) for i in cache.informers})
    cache.start()
    engine = Engine(config, ledger, kube, metrics, cache=cache)
    app = create_app(config, ledger, engine, metrics).test_client()
    try:
        assert cache.wait_synced(30)
        assert app.get("/readyz").get_json()["checks"]["cluster_cache"] == "ok"
        engine.start()
        before = kube.requests
        assert app.post("/webhook/alertmanager", json=body(alert(xid_labels(nodes[0]))),
                        headers={"Authorization": "Bearer t"}).status_code == 200
        wait_until(lambda: ledger.counts_by_status().get("succeeded") == 1, 30, what="the cordon")
        assert kube.requests - before == 3  # GET the node, PATCH it, POST the Event
        assert cache.nodes.lists == 1  # the decision read the cache
        assert core.read_node(nodes[0]).spec.unschedulable
        text = app.get("/metrics").get_data(as_text=True)
        assert 'vigil_cluster_cache_objects{resource="nodes"} ' in text
        assert "vigil_cluster_cache_staleness_seconds" in text
    finally:
        engine.stop()
        cache.stop()
        ledger.close()



def test_a_watch_older_than_etcd_keeps_relists(tmp_path):
    """410 Gone for real: an API server without a watch cache (watches go to etcd) and etcd
    compacted past the informer's resourceVersion, as after a long disconnect. The informer lists
    again and the view stays whole. Its own small plane: the shared one keeps its watch cache."""
    cp = start(tmp_path / "k8s", "api", timeout=120, apiserver_flags=("--watch-cache=false",))
    try:
        core = client.CoreV1Api(cp.api_client())
        names = [f"gone-n{i}" for i in range(3)]
        for n in names:
            core.create_node(gpu_node(n, pool="gone"))
        kube = Kube(str(cp.kubeconfig), node_selector="vigil.io/pool=gone")
        cache = ClusterCache(kube, Needs())
        informer = cache.nodes
        informer._list()
        for i in range(3):  # history the informer has not seen, then compacted away
            core.patch_node(names[0], {"metadata": {"labels": {"seen": str(i)}}})
        revision = core.list_node().metadata.resource_version
        r = requests.post(f"{cp.etcd}/v3/kv/compaction", json={"revision": revision, "physical": True}, timeout=10)
        assert r.ok, r.text
        thread = threading.Thread(target=informer.run, daemon=True)
        thread.start()
        wait_until(lambda: informer.gone == 1 and informer.lists == 2, 30, what="a 410 Gone, then a relist")
        assert cache.view().nodes[names[0]].labels["seen"] == "2"  # what the gap held, recovered by the relist
        core.patch_node(names[1], {"spec": {"unschedulable": True}})
        wait_until(lambda: cache.view().nodes[names[1]].unschedulable, 30, what="events after the relist")
        assert sorted(cache.view().managed) == names and informer.gone == 1
        kube.retrier.stopping.set()
        core.patch_node(names[2], {"spec": {"unschedulable": True}})  # an event ends the watch now
        thread.join(30)
    finally:
        cp.stop()
