"""Adversarial: leadership lost in the middle of a tick. The engine asks `is_leader()` before each
decision, but stored the tick's decisions afterwards without asking again, so a replica whose
lease ran out while it was deciding (a long batch: up to 200 decisions, each held off up to 50 ms
by intake) wrote plans the new leader had not counted in its budget. Its own runner would not run
them (not leader), and the new leader had already resumed the ledger's plans, so they stayed
planned until some later leader resumed them without the rails. A replica stores decisions only
while it still holds the lease. Real Lease on a real API server; the elector's injectable
monotonic clock stands in for time passing during the tick (no sleeps)."""

from __future__ import annotations

import datetime as dt
import json
import os

from remediator.cluster.kube import Kube
from remediator.cluster.lease import LeaseElector
from remediator.config import parse_config
from remediator.domain.payload import parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from tests.k8s.controlplane import add_gpu_nodes

from .payloads import alert, body, xid_labels


class SteppingClock:
    """Monotonic seconds; once `step` is set, each reading moves time on by `step`."""

    def __init__(self) -> None:
        self.now, self.step = 1000.0, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_decisions_made_while_the_lease_ran_out_are_not_stored(k8s_api, tmp_path, unique):
    pool = f"adv-{unique}"
    nodes = [f"{pool}-n{i}" for i in range(3)]
    add_gpu_nodes(k8s_api.api_client(), nodes, pool=pool)
    os.environ["VIGIL_ADV_TOKEN"] = "adv-token-0123456789"
    config = parse_config({
        "auth": {"bearer_token_env": "VIGIL_ADV_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
        "kubernetes": {"kubeconfig": str(k8s_api.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "leader_election": {"namespace": "default", "name": f"vigil-{unique}"},
        "safety": {"budget": {"max_nodes": 10, "min_nodes": 1}},
        "policy": {"rules": [{"name": "cordon", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}},
        "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    kube = Kube(config.kubeconfig, node_selector=config.node_selector)
    clock = SteppingClock()
    leader = LeaseElector(kube.api, config.leader_election, f"replica-{unique}", clock=clock)
    engine = Engine(config, ledger, kube, Metrics(ledger.counts_by_status), leader=leader)
    try:
        starts = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        ledger.record(parse(json.dumps(body(*(alert(xid_labels(n), starts_at=starts) for n in nodes))).encode()).alerts,
                      dt.datetime.now(dt.UTC))
        assert leader.step(), "the replica did not acquire the lease"
        clock.step = config.leader_election.renew_deadline * 0.4  # the lease runs out after two readings
        engine._tick()
        assert not leader.is_leader()
        items, _ = ledger.list_incidents(status=None, alertname=None, limit=10, offset=0)
        assert [i["status"] for i in items] == ["pending"] * 3, [(i["status"], i["reason"]) for i in items]
        assert ledger.incomplete_actions() == {}, "plans stored by a replica that no longer leads"
    finally:
        ledger.close()
