"""Adversarial: escalation steps retried at once (after a resume, a breaker reset, any nudge) each pass
the node budget against the same history and all run: the budget is exceeded.

`Engine._retry_escalations` submits one `escalate:<id>` task per held incident to the worker pool when
something changed; each runs `Followup._escalate` (remediator/runtime/followup.py), which plans the step
with `plan_escalation` against `self.world(now)` *outside* the runner's admission lock, appends it, and
runs it through the runner, whose admission (`Engine._held`) once checked only the pause and the
target, not the budget. Two escalations
planned concurrently both see the budget free. Real Followup, Runner and SQLite ledger; the two worker
threads are lined up with a barrier at the moment each reads the world (the overlap the pool produces)."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading

from remediator.cluster.outcome import Outcome
from remediator.config import parse_config
from remediator.domain.decide import recheck
from remediator.domain.models import ClusterView, Decision, NodeView, PlannedAction, SafetyState
from remediator.domain.payload import Alert
from remediator.domain.rails import Step, World
from remediator.runtime.followup import Followup, incident_of
from remediator.runtime.metrics import Metrics
from remediator.runtime.runner import Runner
from remediator.store.ledger import SQLiteLedger

NOW = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
NODE = {"node": "{{ labels.node }}"}
CONFIG = parse_config({"prometheus": {"url": "http://prom.invalid:9090"},
                       "safety": {"dry_run": False, "budget": {"max_nodes": 1, "min_nodes": 1}},
                       "policy": {"rules": [{
                           "name": "xid", "match": ['alertname="GpuXidCritical"'],
                           "actions": [{"type": "reset_gpu",
                                        "params": {"node": "{{ labels.node }}", "gpu": "0", "uuid": "GPU-1"}}],
                           "verify": {"query": "vector(0) > 1", "deadline": "1s", "interval": "1s"},
                           "escalate": {"steps": [{"type": "reboot_node", "params": NODE}]}}]}}, "adv.yaml")
[RULE] = CONFIG.rules
CLUSTER = ClusterView(nodes={n: NodeView(n, managed=True) for n in ("n1", "n2", "n3", "n4")})


class FakeExecutors:
    def __init__(self) -> None:
        self.ran: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def execute(self, kube, type_, params, incident, deadlines=None, repair=None):
        with self.lock:
            self.ran.append((type_, params.get("node", "")))
        return Outcome("succeeded", f"{type_} done")


class NeverHolds:
    """Prometheus: the verification never holds (the reset did not help)."""

    def check(self, query):
        from remediator.domain.models import DOES_NOT_HOLD, CheckResult
        return CheckResult(DOES_NOT_HOLD, "still faulty")


def test_two_escalations_retried_together_never_exceed_the_node_budget(tmp_path):
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    starts = NOW - dt.timedelta(minutes=2)
    ledger.record([Alert("firing", {"alertname": "GpuXidCritical", "node": n, "severity": "critical"}, {}, starts,
                         dt.datetime(1, 1, 1, tzinfo=dt.UTC), f"{i:016x}") for i, n in enumerate(("n1", "n2"))], NOW)
    ex = FakeExecutors()

    def world(now: dt.datetime) -> World:
        return World(CLUSTER, ledger.history(now - dt.timedelta(hours=1)), CONFIG.safety, SafetyState(), now,
                     False, needs_cluster=True)

    def held(incident: dict, row, kind: str) -> Decision | None:  # Engine._held: every rail for the step's kind
        inc = incident_of(incident)
        step = Step(kind, inc, RULE, (PlannedAction(row.type, row.target, row.params),))
        return recheck(step, world(NOW))

    runner = Runner(ledger, kube=object(), metrics=Metrics(), clock=lambda: NOW, executors=ex, held=held)
    ids = []
    for inc in ledger.due(NOW):  # each first action (a GPU reset, no node out) ran
        [aid] = ledger.save_decision(inc.id, Decision("act", "xid", (PlannedAction(
            "reset_gpu", inc.labels["node"], {"node": inc.labels["node"], "gpu": "0", "uuid": "GPU-1"}),)), NOW)
        assert runner.run_action(inc.id, aid).state == "succeeded"
        ids.append(inc.id)

    barrier = threading.Barrier(2, timeout=5)

    def lined_up_world(now: dt.datetime) -> World:
        w = world(now)
        with contextlib.suppress(threading.BrokenBarrierError):  # serialized: no overlap possible
            barrier.wait()  # both worker threads have read the world: the pool's overlap
        return w

    followup = Followup(ledger=ledger, runner=runner, ops=None, checker=NeverHolds(), metrics=Metrics(),
                        rules={"xid": RULE}, world=lined_up_world, safety_state=lambda now: SafetyState(),
                        guard=lambda inc: None, on_decision=lambda inc, d: None, clock=lambda: NOW,
                        sleep=lambda s: None)
    threads = [threading.Thread(target=followup.verify_and_escalate, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    reboots = [n for t, n in ex.ran if t == "reboot_node"]
    assert len(reboots) <= 1, f"budget max_nodes 1, yet {len(reboots)} nodes were rebooted at once: {reboots}"
