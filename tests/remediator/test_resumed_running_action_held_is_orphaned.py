"""Adversarial: a restart mid-action, then the resumed action is held at its admission (a pause, or a
stricter budget after the restart): the action is left `running` for good.

`Engine._resume` submits `incomplete_actions()` (planned *and running*: the drain that was running when
the process died). `Runner.run_action` admits it like a planned one; a wait -> `Runner._requeue` ->
`ledger.requeue` (remediator/store/ledger.py) cancels only `state='planned'` rows and sets the incident
`waiting`. The `running` drain stays `running`:
- when the re-decided chain later runs to its end, `finish_action` still counts the orphan as left
  (`state IN ('planned','running')`), so the incident stays `acting` forever (never succeeded, never
  followed up after its resolve);
- the orphan counts in every rail's history as in flight (`IN_FLIGHT`): the node stays "out" in the
  budget and `one_repair` holds every later fault of that node as `joined`/`node_busy`;
- `incomplete_actions()` keeps returning it, so the next restart or leader change runs that old drain
  again, after the node was uncordoned and returned to service."""

from __future__ import annotations

import datetime as dt
import threading

from remediator.cluster.outcome import Outcome
from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import Alert
from remediator.runtime.metrics import Metrics
from remediator.runtime.runner import Runner

from .adv_backends import any_ledger  # noqa: F401  (fixture: SQLite and Kubernetes)

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
LABELS = {"alertname": "GpuXidCritical", "node": "gpu-1", "severity": "critical", "xid": "79"}
CHAIN = ("cordon_node", "drain_node", "reboot_node", "uncordon_node")


class FakeExecutors:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def execute(self, kube, type_, params, incident, deadlines=None, repair=None):
        self.ran.append(type_)
        return Outcome("succeeded", f"{type_} done")


def _plan() -> Decision:
    return Decision("act", "xid-ladder", tuple(PlannedAction(t, "gpu-1", {"node": "gpu-1"}) for t in CHAIN))


def test_a_resumed_running_action_held_at_admission_is_not_left_running(any_ledger):  # noqa: F811  (the fixture)
    ledger = any_ledger
    ledger.record([Alert("firing", dict(LABELS), {}, T0 - dt.timedelta(seconds=30), dt.datetime(1, 1, 1, tzinfo=dt.UTC),
                         "f" * 16)], T0)
    [inc] = ledger.due(T0)
    ids = ledger.save_decision(inc.id, _plan(), T0)
    paused = threading.Event()

    def held(incident, row, admit):
        if paused.is_set():
            return Decision("wait", row.rule, reason="paused", detail="paused by on-call",
                            not_before=T0 + dt.timedelta(seconds=30))
        return None

    ex = FakeExecutors()
    runner = Runner(ledger, kube=object(), metrics=Metrics(), clock=lambda: T0, executors=ex, held=held)
    assert runner.run_action(inc.id, ids[0]).state == "succeeded"  # cordoned
    assert ledger.claim_action(ids[1], T0) is not None  # the drain starts ... and the process dies
    # restart; on-call pauses remediation during the incident; the engine resumes the chain it holds
    paused.set()
    resumed = ledger.incomplete_actions()[inc.id]
    assert resumed[0] == ids[1]
    assert runner.run_action(inc.id, resumed[0]).state == "waiting"  # held: the incident waits
    # the pause lifts; the tick re-decides the waiting incident and its new chain runs to its end
    paused.clear()
    later = T0 + dt.timedelta(minutes=5)
    new_ids = ledger.save_decision(inc.id, _plan(), later)
    for aid in new_ids:
        assert runner.run_action(inc.id, aid).state == "succeeded"
    full = ledger.get_incident(inc.id)
    left = {a["id"]: (a["type"], a["state"]) for a in full["actions"] if a["state"] in ("planned", "running")}
    assert not left, (f"the chain ran to its end (uncordon included), yet {left} is still in flight: incident "
                      f"{full['status']!r}; the next restart resumes {ledger.incomplete_actions()} and drains the "
                      "node again after it was returned to service")
    assert full["status"] == "succeeded", f"incident stuck {full['status']!r}"
