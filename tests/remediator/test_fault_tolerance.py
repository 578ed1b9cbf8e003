"""Hung dependencies and transient API faults: every outbound call is bounded, transient errors are
retried until the action's deadline, and an uncertain outcome is decided from the cluster's state."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from collections import Counter

import pytest
from kubernetes import client

from remediator.cluster.kube import Kube, KubeError, RetryPolicy
from remediator.cluster.prom import PromChecker
from remediator.config import parse_config
from remediator.domain.models import Decision, Incident, PlannedAction
from remediator.domain.payload import parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app
from tests.k8s.controlplane import _write_kubeconfig, add_gpu_nodes, wait_until

from .faultproxy import FaultProxy
from .payloads import alert, body, xid_labels


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def hung_socket():
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    for c in held:
        c.close()
    srv.close()


def _bounded(fn, limit: float):
    """Run fn in a thread; the test fails if it has not returned after `limit` seconds."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(_catch(fn)), daemon=True)
    t.start()
    t.join(limit)
    assert out, f"still hanging after {limit} s"
    return out[0]


def _catch(fn):
    try:
        return fn()
    except Exception as exc:
        return exc


def test_a_hung_prometheus_makes_the_guard_unknown(hung_socket):
    now = [0.0]
    prom = PromChecker(f"http://127.0.0.1:{hung_socket}", timeout=1.0, clock=lambda: now[0])
    result = _bounded(lambda: prom.check('up{job="x"} == 0'), 15)
    assert result.holds is None and "did not answer" in result.detail
    # the next incidents' checks within the timeout do not wait on it again
    again = _bounded(lambda: prom.check('up{job="y"} == 0'), 15)
    assert again.holds is None and "not asked again yet" in again.detail
    now[0] += 1.5  # past the window: asked again (and still hung)
    third = _bounded(lambda: prom.check('up{job="z"} == 0'), 15)
    assert third.holds is None and "'up{job=\"z\"} == 0'" in third.detail


def test_bounded_calls_take_a_slot_only_once_given_up():
    """Any number of calls in time run at once; a given-up call holds a slot until its server lets
    go, and while every slot is held the next call fails at once."""
    from remediator.cluster.bounded import Bounded, Overdue

    b = Bounded(2, "test")
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(b.call(lambda: time.sleep(0.3) or 1, 10)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [1] * 8 and b.held == 0
    release = threading.Event()
    for _ in range(2):
        assert isinstance(_catch(lambda: b.call(release.wait, 0.1)), Overdue)
    full = _catch(lambda: b.call(lambda: 1, 10))
    assert b.held == 2 and isinstance(full, Overdue) and "still unanswered" in str(full)
    release.set()
    wait_until(lambda: b.held == 0, 10)
    assert b.call(lambda: 1, 10) == 1


def test_a_hung_api_server_fails_the_action_at_its_deadline(hung_socket, tmp_path):
    kubeconfig = tmp_path / "hung.kubeconfig"
    _write_kubeconfig(kubeconfig, f"http://127.0.0.1:{hung_socket}", tmp_path / "unused-ca.crt", "token")
    kube = Kube(str(kubeconfig), retry=RetryPolicy(request_timeout=1.0, deadline=3.0))
    err = _bounded(lambda: kube.attempt("cordon", lambda: kube.cordon("n1", "1")), 30)
    assert isinstance(err, KubeError) and err.status == 0 and "deadline" in str(err)
    assert kube.retrier.attempts >= 2  # retried, not given up on the first timeout


@pytest.mark.k8s
def test_a_trickling_api_server_is_given_up_and_retried(k8s_cluster, tmp_path, unique):
    """Each answer a byte at a time, every byte within the read timeout, so only a total deadline
    ends a request. Every answer trickling: the cordon fails at the action's deadline, not after
    the whole trickle (minutes); half of them: the step is retried and the cordon applies once."""
    node = f"trickle-{unique}"
    api = k8s_cluster.api_client()
    add_gpu_nodes(api, [node], pool=f"trickle-{unique}")
    outcomes, counts = [], []
    for rate, deadline in ((1.0, 4.0), (0.5, 60.0)):
        proxy = FaultProxy(k8s_cluster.server, k8s_cluster.ca, tmp_path / f"pki-{rate}", rate=rate, seed=4,
                           faults=("trickle",), trickle=0.3)
        kubeconfig = tmp_path / f"trickle-{rate}.kubeconfig"
        _write_kubeconfig(kubeconfig, proxy.url, proxy.ca, k8s_cluster.token)
        kube = Kube(str(kubeconfig), retry=RetryPolicy(request_timeout=1.0, deadline=deadline))
        try:
            outcomes.append(_bounded(lambda kube=kube: kube.attempt("cordon", lambda: kube.cordon(node, "7")), 90))
        finally:
            proxy.close()
        counts.append(proxy.counts["trickle"])
    given_up, done = outcomes
    assert isinstance(given_up, KubeError) and "no complete answer" in str(given_up) and "deadline" in str(given_up)
    assert done == "cordoned" and counts[1] >= 2, (done, counts)  # seed 4: the GET, then the PATCH (it applied)
    got = client.CoreV1Api(api).read_node(node)
    assert got.spec.unschedulable and got.metadata.annotations["vigil.io/incident"] == "7"


def test_a_hung_api_server_fails_lease_ledger_and_readiness_calls_in_time(hung_socket, tmp_path):
    """The client takes a float `_request_timeout` as no timeout at all: the lease's and the
    Kubernetes ledger's calls passed floats and hung for ever on a server that never answers."""
    from remediator.cluster.incidents_api import IncidentsAPI
    from remediator.cluster.lease import LeaseElector
    from remediator.ha_config import LeaderElection

    kubeconfig = tmp_path / "hung.kubeconfig"
    _write_kubeconfig(kubeconfig, f"http://127.0.0.1:{hung_socket}", tmp_path / "unused-ca.crt", "token")
    kube = Kube(str(kubeconfig), retry=RetryPolicy(request_timeout=1.0, deadline=3.0))
    elector = LeaseElector(kube.api, LeaderElection(name="hung", namespace="default", lease_duration=3.0,
                                                      renew_deadline=2.0, retry_period=1.0), "me")
    assert _bounded(elector.try_acquire_or_renew, 15) == "error"
    assert _bounded(elector.release, 15) is False
    ledger = IncidentsAPI(kube.api, "default", timeout=1.0)
    for call in (lambda: ledger.get("vigilincidents", "x"), lambda: ledger.list("vigilincidents")):
        assert isinstance(_bounded(call, 15), ConnectionError)
    assert isinstance(_bounded(kube.ping, 15), Exception)  # /readyz says "error: ..."


POLICY = {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}


@pytest.mark.k8s
def test_100_incidents_behind_a_proxy_faulting_30_percent_of_requests(k8s_cluster, tmp_path, unique, monkeypatch):
    pool = f"faults-{unique}"
    names = [f"{pool}-n{i:03d}" for i in range(100)]
    api = k8s_cluster.api_client()
    core = client.CoreV1Api(api)
    add_gpu_nodes(api, names, pool=pool)
    proxy = FaultProxy(k8s_cluster.server, k8s_cluster.ca, tmp_path / "proxy-pki", rate=0.3, seed=14, slow=2.5)
    kubeconfig = tmp_path / "via-proxy.kubeconfig"
    _write_kubeconfig(kubeconfig, proxy.url, proxy.ca, k8s_cluster.token)
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "t")
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"}, "ledger": {"path": str(tmp_path / "ledger.db")},
        "kubernetes": {"kubeconfig": str(kubeconfig), "node_selector": f"vigil.io/pool={pool}",
                       "request_timeout": "2s", "action_deadline": "60s"},
        "engine": {"workers": 8},
        "safety": {"budget": {"max_nodes": 100, "min_nodes": 0}, "breaker": {"max_actions": 1000}},
        "policy": POLICY}, "test.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    kube = Kube(str(kubeconfig), node_selector=config.node_selector,
                retry=RetryPolicy(request_timeout=config.kube_request_timeout, deadline=config.action_deadline))
    engine = Engine(config, ledger, kube, metrics)
    http = create_app(config, ledger, engine, metrics).test_client()
    engine.start()
    try:
        for node in names:
            r = http.post("/webhook/alertmanager", json=body(alert(xid_labels(node))),
                          headers={"Authorization": "Bearer t"})
            assert r.status_code == 200, r.data

        def settled():
            counts = ledger.counts_by_status()
            return counts if sum(counts.values()) == 100 and not set(counts) & {"pending", "deferred", "waiting",
                                                                                 "acting"} else None
        counts = wait_until(settled, 400, interval=1, what="every incident settled")
    finally:
        engine.stop()
        proxy.close()
    print(f"\nfaults injected: {dict(proxy.counts)}; incidents: {counts}; request attempts: "
          f"{kube.retrier.attempts}")
    assert sum(n for f, n in proxy.counts.items() if f != "none") >= 0.2 * sum(proxy.counts.values())
    assert all(proxy.counts[f] for f in ("429", "500", "reset_before", "reset_after", "delay", "slow"))
    assert counts.get("succeeded", 0) >= 98, counts
    items, _ = ledger.list_incidents(status=None, alertname=None, limit=500, offset=0)
    for i in items:
        if i["status"] != "succeeded":
            assert i["reason"] and i["detail"], i  # every non-success says why
        full = ledger.get_incident(i["id"])
        ran = [a for a in full["actions"] if a["state"] != "cancelled"]  # a plan held at its admission (the
        assert len(ran) == 1, full["actions"]  # view unavailable) is cancelled, re-planned: one cordon ran, never two
    nodes = {n.metadata.name: n for n in core.list_node(label_selector=f"vigil.io/pool={pool}").items}
    done = {i["labels"]["node"] for i in items if i["status"] == "succeeded"}
    assert all(nodes[n].spec.unschedulable and nodes[n].metadata.annotations.get("vigil.io/incident") for n in done)
    events = core.list_namespaced_event("default", field_selector="reason=VigilCordon").items
    per_node = Counter(e.involved_object.name for e in events if e.involved_object.name in nodes)
    assert max(per_node.values()) == 1, per_node  # an Event per cordon, never two
    assert done <= set(per_node), done - set(per_node)  # Events are retried like the cordon: none lost
    ledger.close()
    for n in names:
        core.delete_node(n)


@pytest.mark.k8s
def test_a_kill_between_patch_and_event_is_finished_on_resume(k8s_cluster, tmp_path, unique, monkeypatch):
    """The cordon's PATCH applied, then the process died (kill -9) before its Event: the resumed
    action sees its own cordon, records it as done and writes the Event, once."""
    pool = f"resume-{unique}"
    node = f"{pool}-n0"
    api = k8s_cluster.api_client()
    core = client.CoreV1Api(api)
    add_gpu_nodes(api, [node], pool=pool)
    monkeypatch.setenv("VIGIL_TEST_TOKEN", "t")
    config = parse_config({"auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
                           "ledger": {"path": str(tmp_path / "ledger.db")},
                           "kubernetes": {"kubeconfig": str(k8s_cluster.kubeconfig),
                                          "node_selector": f"vigil.io/pool={pool}"},
                           "policy": POLICY}, "test.yaml")
    ledger = SQLiteLedger(config.ledger_path)

    ledger.record(parse(json.dumps(body(alert(xid_labels(node)))).encode()).alerts, now())
    inc: Incident = ledger.due(now())[0]
    [action_id] = ledger.save_decision(inc.id, Decision("act", "xid", (PlannedAction("cordon_node", node,
                                                                                     {"node": node}),)), now())
    assert ledger.claim_action(action_id, now()) is not None  # running when the process died
    core.patch_node(node, {"spec": {"unschedulable": True}, "metadata": {"annotations": {
        "vigil.io/cordoned-by": "vigil", "vigil.io/incident": str(inc.id)}}})  # the PATCH that applied
    for _ in range(2):  # resumed twice (say, killed again): still one Event
        kube = Kube(config.kubeconfig, node_selector=config.node_selector)
        metrics = Metrics(ledger.counts_by_status)
        engine = Engine(config, ledger, kube, metrics)
        engine.start()
        wait_until(lambda: ledger.counts_by_status().get("succeeded") == 1, 30, what="the resumed cordon")
        engine.stop()
        with ledger._tx() as db:  # as if it died again before recording the outcome
            db.execute("UPDATE actions SET state='running' WHERE id=?", (action_id,))
            db.execute("UPDATE incidents SET status='acting' WHERE id=?", (inc.id,))
    got = ledger.get_incident(inc.id)
    assert got["actions"][0]["result"]["detail"] == "cordoned"
    events = core.list_namespaced_event("default", field_selector=f"involvedObject.name={node}").items
    assert [e.reason for e in events if e.reason.startswith("Vigil")] == ["VigilCordon"]
    ledger.close()
    core.delete_node(node)
