"""Converge: every rail that holds work back also lets it go. On the real local cluster, through the
webhook, nobody re-sending anything: faults held back by the budget, a pause or the breaker wait in
the queue and are acted on when the rail clears; an alert no webhook delivered is found in
Alertmanager's API; plans resumed into a stricter config obey it."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import requests

from remediator.cluster.kube import Kube
from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import parse
from remediator.runtime import reconcile
from remediator.runtime.engine import BREAKER_KEY, Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import ts
from tests.k8s.controlplane import free_port, wait_until
from tests.stack import Stack

from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s
CORDON = {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
                     "on_resolved": {"uncordon": True}}]}
FAST = {"engine": {"reconcile_interval": "2s"}}
ROOM = {"safety": {"budget": {"max_nodes": 3}}}  # the budget holds none of these three back


class Peak:
    """Samples how many of `nodes` are cordoned, every 0.1 s, until stopped; keeps the peak."""

    def __init__(self, h, nodes: list[str]) -> None:
        self.h, self.nodes, self.peak, self._stop = h, set(nodes), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def out(self) -> set[str]:
        return {n.metadata.name for n in self.h.core.list_node(label_selector=f"vigil.io/pool={self.h.pool}").items
                if n.spec.unschedulable and n.metadata.name in self.nodes}

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, len(self.out()))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def _fire(h, node: str) -> dict:
    payload = h.xid(node)
    assert h.post(payload).status_code == 200
    return payload


def _resolve(h, payload: dict) -> None:
    resolved = dict(payload, status="resolved", alerts=[dict(payload["alerts"][0], status="resolved",
                                                             endsAt=dt.datetime.now(dt.UTC).isoformat())])
    assert h.post(resolved).status_code == 200


def _acted(h) -> set[str]:
    return {i["labels"]["node"] for i in h.incidents(limit=500) if i["status"] == "succeeded"}


def test_eight_faults_under_a_budget_of_two_are_all_repaired_as_earlier_ones_return(remediator):
    h = remediator(nodes=8, policy=CORDON, overrides=FAST)
    peak = Peak(h, h.nodes)
    payloads = {n: _fire(h, n) for n in h.nodes}
    returned: set[str] = set()
    try:
        while len(returned) < 8:
            want = min(2, 8 - len(returned))
            out = wait_until(lambda want=want: len(peak.out() - returned) == want and peak.out() - returned, 60,
                             what="the next nodes cordoned, up to the budget")
            queue = h.http.get("/api/queue", headers=h.headers).get_json()
            assert queue["total"] == 8 - len(returned) - len(out), queue
            assert all(q["reason"] == "budget" for q in queue["items"]), queue
            for node in out:  # repaired: the alert resolves, Vigil uncordons, the slot goes to the next
                _resolve(h, payloads[node])
                returned.add(node)
            wait_until(lambda: not (peak.out() & returned), 60, what="the repaired nodes uncordoned")
    finally:
        assert peak.stop() <= 2, "more nodes out than the budget allows"
    assert _acted(h) == set(h.nodes), "every held fault was acted on"
    assert h.http.get("/api/queue", headers=h.headers).get_json()["total"] == 0


def test_faults_held_by_a_pause_are_acted_on_after_the_resume(remediator):
    # the default reconcile interval (30 s): the resume itself wakes them
    h = remediator(nodes=3, policy=CORDON, overrides=ROOM)
    paused = h.http.post("/api/pause", json={"paused": True, "reason": "maintenance"}, headers=h.headers)
    assert paused.status_code == 200
    for n in h.nodes:
        _fire(h, n)
    waiting = wait_until(lambda: [i for i in h.incidents() if i["status"] == "waiting"] if len(
        [i for i in h.incidents() if i["status"] == "waiting"]) == 3 else None, 30, what="3 faults waiting")
    assert {i["reason"] for i in waiting} == {"paused"}
    assert not any(h.unschedulable(n) for n in h.nodes)
    assert h.http.post("/api/pause", json={"paused": False}, headers=h.headers).status_code == 200
    wait_until(lambda: all(h.unschedulable(n) for n in h.nodes), 30, what="all 3 cordoned within 30 s of the resume")


def test_faults_held_by_the_breaker_are_acted_on_after_its_reset(remediator):
    h = remediator(nodes=3, policy=CORDON, overrides=ROOM)
    h.ledger.set_state(BREAKER_KEY, ts(dt.datetime.now(dt.UTC)))
    for n in h.nodes:
        _fire(h, n)
    wait_until(lambda: len([i for i in h.incidents() if i["status"] == "waiting" and i["reason"] == "breaker_open"])
               == 3, 30, what="3 faults waiting for the breaker")
    assert h.http.post("/api/breaker/reset", headers=h.headers).status_code == 200
    wait_until(lambda: all(h.unschedulable(n) for n in h.nodes), 30, what="all 3 cordoned within 30 s of the reset")


def test_a_waiting_fault_whose_alert_resolves_ends_with_nothing_done(remediator):
    h = remediator(nodes=2, policy=CORDON, overrides={"safety": {"budget": {"max_nodes": 1}}})
    first, second = _fire(h, h.nodes[0]), _fire(h, h.nodes[1])
    wait_until(lambda: h.unschedulable(h.nodes[0]), 30, what="the first cordoned")
    wait_until(lambda: any(i["status"] == "waiting" for i in h.incidents()), 30, what="the second waiting")
    _resolve(h, second)
    [inc] = wait_until(lambda: [i for i in h.incidents() if i["labels"]["node"] == h.nodes[1]
                                and i["status"] == "cancelled"], 30, what="the waiting one cancelled")
    assert inc["reason"] == "resolved"
    _resolve(h, first)
    wait_until(lambda: not h.unschedulable(h.nodes[0]), 30, what="the first returned")
    assert not h.unschedulable(h.nodes[1]), "nothing was done for the resolved one"


def test_a_wait_that_outlasts_max_wait_is_handed_to_people(remediator):
    h = remediator(nodes=2, policy=CORDON, overrides={"engine": {"reconcile_interval": "1s", "max_wait": "2s"}})
    assert h.http.post("/api/pause", json={"paused": True, "reason": "long"}, headers=h.headers).status_code == 200
    _fire(h, h.nodes[0])
    [inc] = h.wait_status("handed_over", timeout=30)
    assert inc["reason"] == "max_wait" and "paused" in inc["detail"], inc
    assert h.http.get("/api/queue", headers=h.headers).get_json()["total"] == 0
    assert h.http.post("/api/pause", json={"paused": False}, headers=h.headers).status_code == 200
    assert not h.unschedulable(h.nodes[0])


def _planned_then_resumed(h, n: int) -> tuple[Peak, Engine]:
    """n cordons planned (as a previous run under a looser config left them in the ledger), then
    resumed by a new engine with h's (stricter) config: each is admitted against it right before it runs."""
    h.engine.stop()
    now = dt.datetime.now(dt.UTC)
    h.ledger.record([_alert_of(node) for node in h.nodes[:n]], now)
    for inc in h.ledger.due(now):
        h.ledger.save_decision(inc.id, Decision("act", "xid", (PlannedAction("cordon_node", inc.labels["node"],
                                                                             {"node": inc.labels["node"]}),)), now)
    peak = Peak(h, h.nodes)
    kube = Kube(h.config.kubeconfig, node_selector=h.config.node_selector)  # the stopped engine's client is stopped
    engine = Engine(h.config, h.ledger, kube, Metrics(h.ledger.counts_by_status))
    engine.start()
    return peak, engine


def test_plans_resumed_into_a_stricter_budget_obey_it(remediator):
    h = remediator(nodes=5, policy=CORDON, overrides={"safety": {"budget": {"max_nodes": 2}}})
    peak, engine = _planned_then_resumed(h, 5)
    try:
        # the five chains are admitted one at a time on four workers: wait for all three held back
        waiting = wait_until(lambda: len(peak.out()) == 2 and len(w := [i for i in h.ledger.waiting()
                                                                        if i["reason"] == "budget"]) == 3 and w, 60,
                             what="2 admitted, the rest waiting for the budget")
        assert len(waiting) == 3
    finally:
        assert peak.stop() <= 2
        engine.stop()


def test_plans_resumed_into_a_stricter_breaker_obey_it(remediator):
    h = remediator(nodes=5, policy=CORDON, overrides={"safety": {"budget": {"max_nodes": 5},
                                                                 "breaker": {"max_actions": 2, "window": "5m"}}})
    peak, engine = _planned_then_resumed(h, 5)
    try:
        waiting = wait_until(lambda: len(peak.out()) == 2 and len(w := [i for i in h.ledger.waiting()
                                                                        if i["reason"] == "breaker_open"]) == 3
                             and w, 60, what="2 admitted, then the breaker opened and holds the rest")
        assert len(waiting) == 3 and h.ledger.get_state(BREAKER_KEY) is not None
    finally:
        assert peak.stop() <= 2
        engine.stop()


def _alert_of(node: str):
    return parse(json.dumps(body(alert(xid_labels(node)))).encode()).alerts[0]


@pytest.fixture
def alertmanager(tmp_path):
    """A real Alertmanager with the shipped routing whose remediator receiver points at a closed port:
    its webhooks are never delivered."""
    stack = Stack(tmp_path)
    url = stack.start_alertmanager(f"http://127.0.0.1:{free_port()}/webhook/alertmanager", "unused-token")
    yield url
    stack.stop()


def test_an_alert_only_in_alertmanager_is_acted_on_within_one_reconcile_interval(remediator, alertmanager,
                                                                                monkeypatch):
    monkeypatch.setattr(reconcile, "RESOLVE_AFTER", 4.0)  # the absence that makes a resolve (300 s by default)
    h = remediator(nodes=2, policy=CORDON, overrides={"engine": {"reconcile_interval": "3s"},
                                                      "alertmanager": {"url": alertmanager}})
    node = h.nodes[0]
    labels = {**xid_labels(node), "remediation": "auto"}
    other = {"alertname": "SomethingElse", "severity": "warning", "remediation": "auto"}  # stays firing: an empty
    now = dt.datetime.now(dt.UTC).isoformat()  # answer would resolve nothing (a restarted peer has no alerts yet)
    r = requests.post(f"{alertmanager}/api/v2/alerts", json=[{"labels": labels, "startsAt": now},
                                                             {"labels": other, "startsAt": now}], timeout=5)
    assert r.status_code == 200
    wait_until(lambda: h.unschedulable(node), 30, what="the undelivered alert acted on")
    [inc] = [i for i in h.incidents() if i["alertname"] == "GpuXidCritical"]
    assert inc["notifications"] == 1 and h.metrics.reconciled.labels("recorded")._value.get() == 2
    # it resolves in Alertmanager only: Vigil sees that too, and returns the node
    requests.post(f"{alertmanager}/api/v2/alerts", json=[{"labels": labels, "startsAt": inc["startsAt"],
                                                          "endsAt": dt.datetime.now(dt.UTC).isoformat()}], timeout=5)
    wait_until(lambda: not h.unschedulable(node), 30, what="the node returned after the resolve in Alertmanager")
