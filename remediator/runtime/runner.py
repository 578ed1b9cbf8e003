"""The thin shell around the executors: claim an action in the ledger, execute it, record the
outcome (ledger, audit, metrics). Shared by the engine (first actions) and the follow-ups
(escalation steps, restores, uncordons), so every change is recorded the same way."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from remediator.cluster.executor import EXECUTORS, Executors, Outcome
from remediator.cluster.kube import Kube, KubeError
from remediator.cluster.lease import AlwaysLeader, Leadership, NotLeader
from remediator.cluster.repair import RepairContext
from remediator.domain.models import Decision
from remediator.runtime.metrics import Metrics
from remediator.runtime.notify import Event, action_event
from remediator.runtime.repairs import RepairRails
from remediator.store.ledger import ActionRow, Ledger, from_ts

log = logging.getLogger(__name__)


class Nudge:
    """Something a waiting incident may wait for changed (an action finished, a pause lifted, the
    breaker reset, the cluster changed): the engine decides the head of the queue again at once,
    not at the next reconcile interval."""

    def __init__(self, wake: threading.Event | None = None) -> None:
        self._flag = threading.Event()
        self._wake = wake

    def set(self) -> None:
        self._flag.set()
        if self._wake is not None:
            self._wake.set()

    def take(self) -> bool:
        """Whether it was set since the last take (and clear it)."""
        if not self._flag.is_set():
            return False
        self._flag.clear()
        return True


@dataclass
class ClusterOps:
    """What the follow-ups may do to the cluster: run or restore an action, read who owns a change,
    and drop a claim Vigil no longer holds. None of it decides anything: the rails do. Every change
    is fenced: a replica that cannot prove it holds the leader lease changes nothing."""
    kube: Kube
    executors: Executors = EXECUTORS
    deadlines: dict[str, float] | None = None  # per action type: how long transient API errors are retried
    leader: Leadership = field(default_factory=AlwaysLeader)
    repair: RepairContext | None = None

    def execute(self, type_: str, params: dict[str, Any], incident: str) -> Outcome:
        try:
            self.leader.fence()
        except NotLeader as exc:
            return Outcome("failed", str(exc), reason="not_leader")
        return self.executors.execute(self.kube, type_, params, incident, self.deadlines, self.repair)

    def restore(self, type_: str, params: dict[str, Any], result: dict[str, Any], incident: str) -> Outcome:
        try:
            self.leader.fence()
        except NotLeader as exc:
            return Outcome("failed", str(exc), reason="not_leader")
        return self.executors.restore(self.kube, type_, params, result, incident)

    def owner_of(self, type_: str, params: dict[str, Any], result: dict[str, Any]) -> str:
        return self.executors.owner_of(self.kube, type_, params, result)

    def drop_claim(self, node: str, incident: str, owner: str) -> None:
        """An Event on the node saying Vigil let go of its cordon (someone else owns it now)."""
        try:
            obj = self.kube.call(self.kube.core.read_node, node)
        except Exception as exc:
            log.warning("could not read node %s to record the dropped claim: %s", node, exc)
            return
        self.kube.event(obj, "VigilClaimDropped", f"Vigil dropped its cordon claim for incident {incident}: "
                        f"spec.unschedulable is owned by {owner}; Vigil will not uncordon it")


@dataclass
class Runner:
    ledger: Ledger
    kube: Kube | None
    metrics: Metrics
    clock: Callable[[], dt.datetime]
    executors: Executors = EXECUTORS
    deadlines: dict[str, float] | None = None  # per action type: how long transient API errors are retried
    notify: Callable[[Event], None] = lambda event: None  # VigilRemediation notifications (acted, blocked)
    leader: Leadership = field(default_factory=AlwaysLeader)
    repair: RepairContext | None = None
    rails: RepairRails | None = None  # repeat offenders and silences around repairs
    # The admission: why this action may not run now, asked right before it runs (every rail again, for
    # the step's kind: `first` for a decided chain, `escalation` or `on_failure` for a follow-up step), as
    # a decision (wait or refuse), or None.
    held: Callable[[dict, ActionRow, str], Decision | None] = lambda incident, row, kind: None
    nudge: Nudge = field(default_factory=Nudge)  # set when an action finishes: a budget slot may be free
    admission: threading.Lock = field(default_factory=threading.Lock)  # admissions one at a time

    def run_action(self, incident_id: int, action_id: int, *, kind: str = "first") -> Outcome | None:
        """Admit, claim, execute and record one action; None if it was cancelled or already finished,
        or if this replica is not (or no longer) the leader: the next leader resumes it. An action the
        rails hold back now does not run (Outcome "waiting"): a decided chain's incident waits in the
        queue; a follow-up step is cancelled, and the follow-up tries it again later."""
        if not self.leader.is_leader():
            return None
        incident = self.ledger.get_incident(incident_id) or {}
        if incident.get("alert_status") == "resolved" and _state(incident, action_id) == "planned":
            # planned while the alert fired, appended after the resolve was recorded: never act on a resolved alert
            self.ledger.finish_action(action_id, "cancelled", {"detail": "the alert resolved before this step ran",
                                                               "reason": "resolved"}, self.clock())
            return None
        with self.admission:  # one at a time: two admissions never both take the last budget slot
            planned = _row(incident, action_id)
            stop = self.held(incident, planned, kind) if planned is not None else None
            again = stop is not None and (stop.outcome in ("wait", "defer") or  # a denial: decided afresh
                                          (stop.outcome == "handed_over" and kind == "first"))
            if again:
                return self._requeue(incident_id, planned, stop) if kind == "first" else self._held_back(planned, stop)
            row = self.ledger.claim_action(action_id, self.clock())
        if row is None:  # cancelled (the alert resolved) or finished before a restart
            return None
        try:
            self.leader.fence()  # the last check before the cluster changes
        except NotLeader as exc:
            log.warning("incident %d: not acting on %s(%s): %s", incident_id, row.type, row.target, exc)
            return None
        if stop is not None:
            outcome = Outcome("blocked", f"not run: {stop.detail}", reason=stop.reason)
        elif self.kube is None:
            outcome = Outcome("failed", "no Kubernetes client", reason="no_cluster")
        else:
            outcome = self._execute(incident_id, incident, row)
        if outcome.state == "interrupted":  # stopping: left running, resumed once after the restart
            log.info("incident %d: %s(%s) interrupted by shutdown", incident_id, row.type, row.target)
            return outcome
        now = self.clock()
        self.ledger.finish_action(action_id, outcome.state, outcome.as_result(), now)
        self.ledger.audit(f"action:{row.type}", {"target": row.target, "state": outcome.state,
                                                 "detail": outcome.detail}, now,
                          incident_id=incident_id, action_id=action_id)
        starts = from_ts(incident.get("startsAt"))
        self.metrics.observe_action(row.type, outcome.state, (now - starts).total_seconds() if starts else None,
                                    outcome.reason)
        log.info("incident %d: %s(%s) %s: %s", incident_id, row.type, row.target, outcome.state, outcome.detail)
        self.notify(action_event(incident_id, row.type, outcome.state, row.target, outcome.detail))
        self.nudge.set()
        return outcome

    def _held_back(self, row: ActionRow, stop: Decision) -> Outcome:
        """A follow-up step (escalation, on_failure) the rails hold back at its admission: cancelled,
        not run; the follow-up plans it again when the rail clears."""
        self.ledger.finish_action(row.id, "cancelled", {"detail": f"held back: {stop.detail}",
                                                        "reason": stop.reason}, self.clock())
        log.info("incident %d: %s(%s) held back (%s): %s", row.incident_id, row.type, row.target, stop.reason,
                 stop.detail)
        return Outcome("waiting", stop.detail, reason=stop.reason)

    def _requeue(self, incident_id: int, row: ActionRow, stop: Decision) -> Outcome:
        """The rails hold this action back now: the rest of its chain is cancelled and the incident
        waits in the queue, decided afresh (from the world as it is then) when the rail clears."""
        self.ledger.requeue(incident_id, stop, self.clock())
        log.info("incident %d: %s(%s) waits (%s): %s", incident_id, row.type, row.target, stop.reason, stop.detail)
        return Outcome("waiting", stop.detail, reason=stop.reason)

    def _execute(self, incident_id: int, incident: dict, row: Any) -> Outcome:
        if self.rails is None:
            return self.executors.execute(self.kube, row.type, row.params, str(incident_id), self.deadlines,
                                          self.repair)
        replaced, extra = self.rails.before(incident_id, incident, row)
        outcome = replaced or self.executors.execute(self.kube, row.type, row.params, str(incident_id),
                                                     self.deadlines, self.repair)
        if extra:
            outcome = dataclasses.replace(outcome, data={**outcome.data, **extra})
        return self.rails.after(incident_id, row, outcome)


def _state(incident: dict, action_id: int) -> str:
    return next((a["state"] for a in incident.get("actions", []) if a["id"] == action_id), "")


def _row(incident: dict, action_id: int) -> ActionRow | None:
    """The action as planned (read with its incident), before it is claimed."""
    a = next((a for a in incident.get("actions", []) if a["id"] == action_id), None)
    if a is None:
        return None
    return ActionRow(a["id"], incident["id"], a["seq"], a["rule"], a["type"], a["target"], a["params"], a["state"])


__all__ = ["ClusterOps", "KubeError", "Nudge", "Runner"]
