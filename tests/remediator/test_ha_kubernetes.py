"""Three replicas with the Kubernetes ledger on the real local cluster. Every notification goes to two
replicas (as two Alertmanager peers would), failed deliveries are retried at another replica (as
Alertmanager retries), and the leader is SIGKILLed every 10 s during a burst of 500 distinct
incidents (and restarted, as its Deployment would). Then: every incident that got a 2xx is
decided once and acted on at most once (0 lost, 0 doubled: on the nodes and their Events), and
the disruption budget was never exceeded, sampled all along.

Sizing for 2 cores: 100 kwok nodes x 5 GPUs = 500 XID incidents; the rule cordons the node with
a 1 h cooldown and the budget allows 40 nodes out, so 40 incidents act, 460 are blocked (budget
or cooldown), and everything is decided while the leader keeps dying. Lease 6 s / renew 4 s /
retry 1 s so that a new leader is elected between kills."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from kubernetes import client

from tests.k8s.controlplane import _write_kubeconfig, add_gpu_nodes, wait_until
from tests.remediator.faultproxy import FaultProxy
from tests.remediator.payloads import alert, body, xid_labels
from tests.remediator.replicas import Replicas, node_events

pytestmark = pytest.mark.k8s
NODES, GPUS, MAX_NODES = 100, 5, 40
FINAL = ("succeeded", "failed", "blocked", "cancelled", "ignored", "waiting")  # decided (held work waits)
POLICY = {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'], "cooldown": "1h",
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}


class Slots:
    """Three replica slots; a killed replica's slot gets a fresh process."""

    def __init__(self, reps: Replicas, overrides: dict) -> None:
        self.reps, self.overrides, self.lock = reps, overrides, threading.Lock()
        self.slots = [reps.start(f"r{i}-0", overrides) for i in range(3)]
        self.kills = 0

    def get(self, i: int):
        with self.lock:
            return self.slots[i % 3]

    def kill_leader(self) -> bool:
        for i in range(3):
            r = self.get(i)
            if r.alive and (r.state() or {}).get("leader"):
                r.kill()
                self.kills += 1
                fresh = self.reps.start(f"r{i}-{self.kills}", self.overrides, wait=False)
                with self.lock:
                    self.slots[i] = fresh
                return True
        return False


def deliver(slots: Slots, i: int, payload: dict) -> bool:
    """To two replicas; a failed delivery is retried at the next replica, as Alertmanager would."""
    acked = False
    for peer in (i, i + 1):
        for attempt in range(30):
            try:
                if slots.get(peer + attempt).post(payload, timeout=10).status_code == 200:
                    acked = True
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
    return acked


@pytest.mark.parametrize("fault_rate", [0.0, 0.1], ids=["no-faults", "faults-10%"])
def test_three_replicas_leader_killed_every_10s_acts_exactly_once(vigil_crds_cluster, tmp_path, unique,
                                                                   fault_rate):
    """With faults: every replica's API requests (ledger, lease, actions) through the fault proxy."""
    cp = vigil_crds_cluster
    api = cp.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    pool, ns = f"hak-{unique}", f"vigil-{unique}"
    nodes = [f"{pool}-n{i:03d}" for i in range(NODES)]
    add_gpu_nodes(api, nodes, pool=pool)
    core.create_namespace({"metadata": {"name": ns}})
    selector = f"vigil.io/pool={pool}"
    wait_until(lambda: sum(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                           for n in core.list_node(label_selector=selector).items) == NODES, 120, what="nodes Ready")
    kubeconfig, proxy = cp.kubeconfig, None
    if fault_rate:
        proxy = FaultProxy(cp.server, cp.ca, tmp_path / "proxy-pki", rate=fault_rate, seed=21, slow=2.5)
        kubeconfig = tmp_path / "via-proxy.kubeconfig"
        _write_kubeconfig(kubeconfig, proxy.url, proxy.ca, cp.token)
    reps = Replicas(tmp_path, {
        "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"},
        "ledger": {"backend": "kubernetes", "namespace": ns},
        "kubernetes": {"kubeconfig": str(kubeconfig), "node_selector": selector, "request_timeout": "2s"},
        "leader_election": {"namespace": ns, "lease_duration": "6s", "renew_deadline": "4s", "retry_period": "1s"},
        "safety": {"max_alert_age": "1h", "budget": {"max_nodes": MAX_NODES, "min_nodes": 1},
                   "breaker": {"max_actions": 100000, "window": "5m"}},
        "policy": POLICY,
    })
    stop, peak = threading.Event(), [0]

    def watch_budget() -> None:
        while not stop.is_set():
            out = sum(bool(n.spec.unschedulable) for n in core.list_node(label_selector=selector).items)
            peak[0] = max(peak[0], out)
            stop.wait(0.2)

    try:
        slots = Slots(reps, {})
        reps.wait_leader()
        threading.Thread(target=watch_budget, daemon=True).start()
        payloads = [body(alert(xid_labels(n, gpu=str(g)))) for g in range(GPUS) for n in nodes]
        sent = threading.Event()

        def killer() -> None:
            after_burst = 0
            while not stop.wait(10) and after_burst < 2:
                slots.kill_leader()
                after_burst += sent.is_set()

        kill_thread = threading.Thread(target=killer, daemon=True)
        kill_thread.start()
        with ThreadPoolExecutor(8) as pool_:
            futures = []
            for i, p in enumerate(payloads):
                futures.append(pool_.submit(deliver, slots, i, p))
                time.sleep(0.08)  # a burst over about 40 s, so the leader dies several times during it
            acked = [f.result() for f in futures]
        sent.set()
        kill_thread.join(60)

        def objects() -> list[dict]:
            return custom.list_namespaced_custom_object("vigil.io", "v1alpha1", ns, "vigilincidents")["items"]

        def all_decided() -> list[dict] | None:
            objs = objects()
            return objs if len(objs) >= sum(acked) and all(o["status"]["status"] in FINAL for o in objs) else None
        objs = wait_until(all_decided, 240, interval=1, what="every acknowledged incident decided")
    finally:
        stop.set()
        reps.stop_all()
        if proxy is not None:
            proxy.close()
            print(f"\nfaults injected: {dict(proxy.counts)}")

    assert slots.kills >= 4, f"the leader was killed {slots.kills} times"
    assert sum(acked) == len(payloads), f"{len(payloads) - sum(acked)} deliveries never acknowledged"
    by_key = {(o["spec"]["labels"]["node"], o["spec"]["labels"]["gpu"]): o for o in objs}
    assert len(by_key) == len(objs) == NODES * GPUS, "0 lost, 0 duplicated incidents"
    for o in objs:
        decisions = [e for e in o["status"]["audit"] if e["event"].startswith("decision:")
                     and e["event"] not in ("decision:defer", "decision:wait")]  # a wait is decided again
        assert len(decisions) <= 1, (o["metadata"]["name"], decisions)  # never decided twice by two leaders
        assert decisions or o["status"]["status"] == "waiting", o["status"]
    acted: dict[str, int] = {}
    for o in objs:
        for a in o["status"]["actions"]:
            assert a["state"] in ("succeeded", "blocked", "cancelled"), a
            if a["state"] == "succeeded":
                acted[a["target"]] = acted.get(a["target"], 0) + 1
    cordoned = {n.metadata.name for n in core.list_node(label_selector=selector).items if n.spec.unschedulable}
    assert set(acted) == cordoned and set(acted.values()) == {1}, "one incident acted per cordoned node"
    assert len(cordoned) == MAX_NODES, "the budget was used, and held"
    events = node_events(core, "default", "VigilCordon", nodes)
    assert max(events.values()) == 1 and set(events) <= cordoned, f"doubled cordons: {events}"
    assert peak[0] <= MAX_NODES, f"budget exceeded: {peak[0]} nodes out"
