"""Adversarial: a node Vigil cordoned is never returned when its chain was requeued at admission and the
alert then resolved.

A chain cordon -> drain -> reboot -> uncordon: the cordon runs; the drain is held at its admission (a
pause set by the on-call meanwhile, a budget or availability wait). `Runner._requeue` ->
`ledger.requeue` cancels the rest of the chain and sets the incident `waiting`. The alert then
resolves (the XID window passes, or the reconcile resolves it). The intake's `_resolve`
(remediator/store/intake.py) sees a DECIDABLE status and marks the incident `cancelled` ("the alert
resolved before the action ran"), although its cordon ran. `ledger.resolved_followups()` only takes
`succeeded/failed/blocked` incidents, and `followup._cut_short` needs status `succeeded`: the
uncordon never runs, nothing is handed over or notified, and the node stays out of service for good
(and its vigil.io taints with it)."""

from __future__ import annotations

import datetime as dt
import threading

from remediator.cluster.outcome import Outcome
from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import Alert
from remediator.runtime.followup import still_out
from remediator.runtime.metrics import Metrics
from remediator.runtime.runner import Runner

from .adv_backends import any_ledger  # noqa: F401  (fixture: SQLite and Kubernetes)

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
LABELS = {"alertname": "GpuXidCritical", "node": "gpu-1", "severity": "critical", "xid": "79"}


class FakeExecutors:
    def __init__(self) -> None:
        self.ran: list[tuple[str, str]] = []

    def execute(self, kube, type_, params, incident, deadlines=None, repair=None):
        self.ran.append((type_, params.get("node", "")))
        return Outcome("succeeded", f"{type_} done")


def test_resolve_while_requeued_after_a_cordon_still_returns_the_node(any_ledger):  # noqa: F811  (the fixture)
    ledger = any_ledger
    starts = T0 - dt.timedelta(seconds=30)
    ledger.record([Alert("firing", dict(LABELS), {}, starts, dt.datetime(1, 1, 1, tzinfo=dt.UTC), "f" * 16)], T0)
    [inc] = ledger.due(T0)
    node = {"node": "gpu-1"}
    plan = Decision("act", "xid-ladder", (PlannedAction("cordon_node", "gpu-1", node),
                                          PlannedAction("drain_node", "gpu-1", node),
                                          PlannedAction("reboot_node", "gpu-1", node),
                                          PlannedAction("uncordon_node", "gpu-1", node)))
    ids = ledger.save_decision(inc.id, plan, T0)
    paused = threading.Event()

    def held(incident, row, admit):  # the engine's admission: a pause set after the cordon ran
        if paused.is_set():
            return Decision("wait", row.rule, reason="paused", detail="remediation is paused by on-call",
                            not_before=T0 + dt.timedelta(seconds=30))
        return None

    ex = FakeExecutors()
    runner = Runner(ledger, kube=object(), metrics=Metrics(), clock=lambda: T0, executors=ex, held=held)
    assert runner.run_action(inc.id, ids[0]).state == "succeeded"  # cordoned
    paused.set()
    assert runner.run_action(inc.id, ids[1]).state == "waiting"  # the drain waits; the chain is requeued
    assert ledger.get_incident(inc.id)["status"] == "waiting"
    # the alert resolves while the incident waits (the XID window ends, or the reconcile resolves it)
    later = T0 + dt.timedelta(minutes=10)
    ledger.record([Alert("resolved", dict(LABELS), {}, starts, later, "f" * 16)], later)
    full = ledger.get_incident(inc.id)
    assert still_out(full) == ["gpu-1"], "the cordon ran and nothing returned the node"
    followups = [i["id"] for i in ledger.resolved_followups()]
    assert inc.id in followups, (
        f"incident is {full['status']!r} ({full['detail']}) with gpu-1 still cordoned by it, but it is not among "
        f"the resolved follow-ups: no uncordon, no hand-over, the node never comes back")
