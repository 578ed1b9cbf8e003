"""The Kubernetes ledger behind the same fault proxy as the SQLite ledger's test (429 with
Retry-After, 500, resets before and after the write applied, delays past the client's timeout):
every ledger call is retried, a write whose answer was lost is reconciled (the decision and the
claim are idempotent), and no transient fault fails an incident or leaves it acting. Also at 6 %,
and a start-up whose first LIST and state reads meet the faults."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests
from kubernetes import client

from remediator.cluster.incidents_api import IncidentsAPI
from remediator.cluster.kube import Kube, RetryPolicy
from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.kubernetes import KubernetesLedger
from remediator.web.app import create_app
from tests.k8s.controlplane import _write_kubeconfig, add_gpu_nodes, wait_until

from .faultproxy import FaultProxy
from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s
POLICY = {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}


def _post_until_accepted(http, payload: dict, tries: int = 20) -> int:
    """As Alertmanager: a 503 (the ledger did not answer within intake's deadline) is sent again."""
    for _ in range(tries):
        r = http.post("/webhook/alertmanager", json=payload, headers={"Authorization": "Bearer t"})
        if r.status_code != 503:
            return r.status_code
    return 503


@pytest.mark.parametrize(("rate", "seed"), [(0.3, 14), (0.06, 5)], ids=["30%", "6%"])
def test_100_incidents_on_the_kubernetes_ledger_behind_a_faulting_proxy(vigil_crds_cluster, tmp_path, unique,
                                                                      monkeypatch, rate, seed):
    cp = vigil_crds_cluster
    pool, ns = f"kfaults-{unique}", f"kledger-{unique}"
    names = [f"{pool}-n{i:03d}" for i in range(100)]
    api = cp.api_client()
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": ns}})
    add_gpu_nodes(api, names, pool=pool)
    proxy = FaultProxy(cp.server, cp.ca, tmp_path / "proxy-pki", rate=rate, seed=seed, slow=2.5)
    kubeconfig = tmp_path / "via-proxy.kubeconfig"
    _write_kubeconfig(kubeconfig, proxy.url, proxy.ca, cp.token)
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "t")
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"}, "ledger": {"backend": "kubernetes", "namespace": ns},
        "kubernetes": {"kubeconfig": str(kubeconfig), "node_selector": f"vigil.io/pool={pool}",
                       "request_timeout": "2s", "action_deadline": "60s"},
        "engine": {"workers": 8},
        "safety": {"budget": {"max_nodes": 100, "min_nodes": 0}, "breaker": {"max_actions": 1000}},
        "policy": POLICY}, "test.yaml")
    kube = Kube(str(kubeconfig), node_selector=config.node_selector,
                retry=RetryPolicy(request_timeout=config.kube_request_timeout, deadline=config.action_deadline))
    ledger = KubernetesLedger(IncidentsAPI(kube.api, ns, timeout=2.0))  # its first LIST meets the faults too
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, kube, metrics)
    http = create_app(config, ledger, engine, metrics).test_client()
    engine.start()
    try:
        statuses = Counter(_post_until_accepted(http, body(alert(xid_labels(node)))) for node in names)
        assert statuses == {200: 100}, statuses

        def settled():
            counts = ledger.counts_by_status()
            return counts if sum(counts.values()) == 100 and not set(counts) & {"pending", "deferred", "waiting",
                                                                                 "acting"} else None
        counts = wait_until(settled, 500, interval=1, what="every incident settled")
    finally:
        engine.stop()
        proxy.close()
    print(f"\nfaults injected: {dict(proxy.counts)}; incidents: {counts}; ledger retries: {ledger.retries}; "
          f"cluster request attempts: {kube.retrier.attempts}")
    assert sum(n for f, n in proxy.counts.items() if f != "none") >= 0.6 * rate * sum(proxy.counts.values())
    assert counts.get("succeeded", 0) >= 98, counts
    items, total = ledger.list_incidents(status=None, alertname=None, limit=500, offset=0)
    assert total == 100
    for i in items:
        if i["status"] != "succeeded":
            assert i["reason"] and i["detail"], i  # every non-success says why
            assert i["reason"] != "internal_error", i  # a transient fault is never a failure
        full = ledger.get_incident(i["id"])
        ran = [a for a in full["actions"] if a["state"] != "cancelled"]  # a plan held at its admission (the
        assert len(ran) == 1, full["actions"]  # view unavailable) is cancelled, re-planned: one cordon ran, never two
    nodes = {n.metadata.name: n for n in core.list_node(label_selector=f"vigil.io/pool={pool}").items}
    done = {i["labels"]["node"] for i in items if i["status"] == "succeeded"}
    assert all(nodes[n].spec.unschedulable for n in done)
    events = core.list_namespaced_event("default", field_selector="reason=VigilCordon").items
    per_node = Counter(e.involved_object.name for e in events if e.involved_object.name in nodes)
    assert max(per_node.values()) == 1, per_node  # an Event per cordon, never two
    ledger.close()
    for n in names:
        core.delete_node(n)


def test_start_up_under_faults_waits_until_ready_and_never_exits(vigil_crds_cluster, tmp_path, unique):
    """Every request faulting at start: the process stays up, /readyz says 503 (the ledger has not
    listed yet), and once the faults drop to 30 % it becomes ready; five more starts at 30 % all get
    ready. None exits, none logs a traceback."""
    from .replicas import Replicas

    cp = vigil_crds_cluster
    ns = f"kstart-{unique}"
    client.CoreV1Api(cp.api_client()).create_namespace({"metadata": {"name": ns}})
    proxy = FaultProxy(cp.server, cp.ca, tmp_path / "proxy-pki", rate=1.0, seed=3, slow=2.5,
                       faults=("429", "500", "reset_before", "reset_after"))
    kubeconfig = tmp_path / "via-proxy.kubeconfig"
    _write_kubeconfig(kubeconfig, proxy.url, proxy.ca, cp.token)
    reps = Replicas(tmp_path, {"auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
                               "ledger": {"backend": "kubernetes", "namespace": ns},
                               "kubernetes": {"kubeconfig": str(kubeconfig), "request_timeout": "2s"},
                               "leader_election": {"namespace": ns}, "policy": POLICY})

    def readyz(r) -> int:
        try:
            return requests.get(f"{r.url}/readyz", timeout=5).status_code
        except requests.RequestException:
            return 0

    try:
        first = reps.start("first", wait=False)
        wait_until(lambda: readyz(first) == 503, 60, what="up and not ready while every request faults")
        for _ in range(10):  # and stays so, alive, while the faults last
            assert first.alive and readyz(first) == 503
            time.sleep(0.5)
        proxy.rate = 0.3
        reps.wait_ready(first, 90)
        for k in range(5):
            r = reps.start(f"again-{k}", wait=False)
            reps.wait_ready(r, 90)
            r.stop()
            assert r.popen.returncode == 0, r.log.read_text()[-3000:]
    finally:
        reps.stop_all()
        proxy.close()
    for r in reps.replicas:
        text = r.log.read_text()
        assert "Traceback" not in text, text[-3000:]
