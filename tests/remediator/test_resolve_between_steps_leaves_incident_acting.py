"""Adversarial: a resolve that arrives while no step of a chain is running (between two steps: Vigil
restarting mid-chain, or the chain's task queued behind busy workers) leaves the incident `acting` for
good and its cordoned node out of service.

The intake's `_resolve` (remediator/store/intake.py) cancels the planned steps; with a step already
succeeded (the cordon) it leaves the status as it is (`acting`). Only `finish_action` turns an `acting`
incident into a final status, and no action will finish: none is running and none is planned, so
`incomplete_actions()` has nothing to resume and `Runner.run_action` finds every remaining step
cancelled. `resolved_followups()` wants `succeeded/failed/blocked`, so `Followup.after_resolve`
(`_cut_short`: validate and uncordon) never runs: the node stays cordoned, the incident stays `acting`,
nobody is told."""

from __future__ import annotations

import datetime as dt

from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import Alert
from remediator.runtime.followup import still_out

from .adv_backends import any_ledger  # noqa: F401  (fixture: SQLite and Kubernetes)

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
LABELS = {"alertname": "GpuXidCritical", "node": "gpu-1", "severity": "critical", "xid": "79"}
CHAIN = ("cordon_node", "drain_node", "reboot_node", "validate_node", "uncordon_node")


def test_a_resolve_between_two_steps_still_returns_the_node(any_ledger):  # noqa: F811  (the fixture)
    ledger = any_ledger
    starts = T0 - dt.timedelta(seconds=30)
    ledger.record([Alert("firing", dict(LABELS), {}, starts, dt.datetime(1, 1, 1, tzinfo=dt.UTC), "f" * 16)], T0)
    [inc] = ledger.due(T0)
    ids = ledger.save_decision(inc.id, Decision("act", "xid-ladder", tuple(
        PlannedAction(t, "gpu-1", {"node": "gpu-1"}) for t in CHAIN)), T0)
    ledger.claim_action(ids[0], T0)
    ledger.finish_action(ids[0], "succeeded", {"detail": "cordoned"}, T0)
    # Vigil stops here (a rollout); the alert resolves meanwhile (webhook to the other replica, or the reconcile)
    later = T0 + dt.timedelta(minutes=3)
    ledger.record([Alert("resolved", dict(LABELS), {}, starts, later, "f" * 16)], later)
    full = ledger.get_incident(inc.id)
    assert still_out(full) == ["gpu-1"]
    assert inc.id not in ledger.incomplete_actions(), "nothing left to resume"
    assert full["status"] != "acting", (
        f"incident stuck 'acting' with no step planned or running; not among resolved follow-ups "
        f"({[i['id'] for i in ledger.resolved_followups()]}): gpu-1 is never validated nor uncordoned")
    assert inc.id in [i["id"] for i in ledger.resolved_followups()]
