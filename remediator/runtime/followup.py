"""After the actions: verify through Prometheus, escalate along the rule's ladder when the
verification does not hold, and, once the alert resolves, restore what the rule asked to restore
(HTTPRoute weights, a Service's selector) and uncordon only after the recovery check holds.

Every one of those steps is planned by the pure core (`plan_escalation`, `plan_step`) and so
passes the same rails as a first action; this module only executes what passed. Checks have three
outcomes: holds, does_not_hold and unknown. Unknown never escalates (unless the rule's verify says
`on_unknown: escalate`): the incident is marked `unverifiable` and the next step is left to people.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from remediator.cluster.prom import PromChecker
from remediator.domain.actions import ACTIONS
from remediator.domain.decide import after_verification, alert_context, plan_escalation, plan_on_failure, plan_step
from remediator.domain.models import (
    DOES_NOT_HOLD,
    HOLDS,
    UNKNOWN,
    CheckResult,
    Decision,
    Incident,
    PlannedAction,
    SafetyState,
)
from remediator.domain.policy import Check, Rule
from remediator.domain.rails import Step, World
from remediator.runtime.metrics import Metrics
from remediator.runtime.notify import Event
from remediator.runtime.runner import ClusterOps, Runner
from remediator.store.ledger import Ledger, from_ts
from remediator.store.views import bookkeeping_time

log = logging.getLogger(__name__)
VERIFICATION = {HOLDS: "verified", DOES_NOT_HOLD: "not_verified", UNKNOWN: "unverifiable"}
METRIC_RESULT = {HOLDS: "verified", DOES_NOT_HOLD: "failed", UNKNOWN: "unverifiable"}  # vigil_verifications_total


class _Deferred(Exception):
    """A restore or uncordon could not be planned now (the cluster view is unavailable, or a rail that
    can clear holds it): the whole follow-up is tried again on the next tick instead of being
    recorded as done."""


def still_out(inc: dict) -> list[str]:
    """Nodes this incident's actions took out of service (a cordon, a drain, a reboot) that none of
    them returned: a ladder cut short by a resolve still returns them."""
    undone = {a["params"].get("node") for a in inc["actions"] if a["state"] == "succeeded"
              and a["type"] == "uncordon_node"}
    taken = {a["params"].get("node") for a in inc["actions"] if a["state"] == "succeeded"
             and ACTIONS.get(a["type"]) and ACTIONS[a["type"]].undo == "uncordon_node"}
    return sorted(taken - undone - {None})


def _cut_short(rule: Rule, inc: dict) -> bool:
    """A ladder that returns its node (it ends with uncordon_node), cut short by a resolve after it
    took the node out, with nothing failed: its return still runs (validated first where the ladder
    validates). A failed or refused one stays with people; a cordon-only rule is the policy's call."""
    returns = any(a.type == "uncordon_node" for a in rule.actions)
    return returns and inc["status"] == "succeeded" and bool(still_out(inc))


def _validates(rule: Rule) -> bool:
    return any(a.type == "validate_node" for a in (*rule.actions, *rule.escalate.steps, *rule.on_failure))


def incident_of(inc: dict) -> Incident:
    """The typed incident from the ledger's record, with when Vigil received it (the stale rail's age
    is taken there: a plan admitted long after its alert started, after waiting, is not stale)."""
    return Incident(inc["fingerprint"], from_ts(inc["startsAt"]) or dt.datetime.now(dt.UTC), inc["labels"],
                    inc.get("annotations", {}), inc["alert_status"], id=inc["id"],
                    received_at=bookkeeping_time(inc.get("received_at")),
                    waiting_since=bookkeeping_time(inc.get("waiting_since")))


@dataclass
class Followup:
    """Collaborators, passed explicitly: the ledger, the runner (executes and records an action),
    the cluster operations (None without a cluster), a Prometheus checker (None without one), the
    world the rails read (`world(now)`), a decision hook (breaker, metrics), a clock and a stop flag."""
    ledger: Ledger
    runner: Runner
    ops: ClusterOps | None
    checker: PromChecker | None
    metrics: Metrics
    rules: dict[str, Rule]
    world: Callable[[dt.datetime], World]
    safety_state: Callable[[dt.datetime], SafetyState]
    guard: Callable[[Incident], CheckResult | None]
    on_decision: Callable[[Incident, Decision], None]
    clock: Callable[[], dt.datetime]
    stopping: Callable[[], bool] = lambda: False
    sleep: Callable[[float], None] = field(default=time.sleep)
    notify: Callable[[Event], None] = lambda event: None  # VigilRemediation notifications (gave up)

    # ---- checks ---------------------------------------------------------------------------------

    def _once(self, check: Check, incident_id: int, context: dict) -> CheckResult:
        if check.alert_resolved:
            inc = self.ledger.get_incident(incident_id) or {}
            if inc.get("alert_status") == "resolved":
                return CheckResult(HOLDS, "the triggering alert resolved")
        if check.query is None:
            return CheckResult(DOES_NOT_HOLD, "the triggering alert still fires")
        if self.checker is None:
            return CheckResult(UNKNOWN, "no Prometheus configured")
        return self.checker.check(check.render(context))

    def poll(self, check: Check, incident_id: int, context: dict) -> CheckResult:
        """Poll the check until it holds or its deadline passes; the last answer decides."""
        if check.query is None and not check.alert_resolved:
            return CheckResult(HOLDS, "no recovery check configured")
        deadline = time.monotonic() + check.deadline
        while True:
            result = self._once(check, incident_id, context)
            if result.outcome == HOLDS or self.stopping() or time.monotonic() + check.interval > deadline:
                if result.outcome != HOLDS:
                    return CheckResult(result.outcome, f"{result.detail} (deadline {check.deadline:.0f} s)")
                return result
            self.sleep(check.interval)

    # ---- verify and escalate -----------------------------------------------------------------

    def _verify(self, rule: Rule, inc: dict, again: bool = False) -> CheckResult:
        result = self.poll(rule.verify, inc["id"], alert_context(incident_of(inc)))
        if again and inc.get("verification") == VERIFICATION[result.outcome]:
            return result  # a held escalation checked again: the record already says so
        last = inc["actions"][-1]["type"] if inc["actions"] else ""
        self.metrics.verifications.labels(last, METRIC_RESULT[result.outcome]).inc()
        self.ledger.set_verification(inc["id"], VERIFICATION[result.outcome], result.detail, self.clock())
        return result

    def _escalate(self, rule: Rule, inc: dict, index: int, again: bool = False) -> str:
        """Plan escalation step `index` through the rails and run it if it passes: "ran", "waits" (a
        rail that can clear holds it: tried again later) or "stopped"."""
        incident = incident_of(self.ledger.get_incident(inc["id"]) or inc)
        now = self.clock()
        world = self.world(now)
        world = dataclasses.replace(world, now=now, guard=self.guard(incident))
        decision = plan_escalation(incident, rule, index, world)
        if again and decision.outcome == "wait":  # still held: recorded and notified the first time only
            return "waits"
        self.on_decision(incident, decision)
        self.ledger.audit(f"escalation:{decision.outcome}", {"step": index + 1, "reason": decision.reason,
                                                             "detail": decision.detail,
                                                             "trace": list(decision.trace)}, now, incident_id=inc["id"])
        if decision.outcome != "act":
            log.warning("incident %d: escalation step %d %s: %s", inc["id"], index + 1, decision.outcome,
                        decision.detail)
            return "waits" if decision.outcome in ("wait", "defer") else "stopped"
        [p] = decision.actions
        action_id = self.ledger.append_action(inc["id"], rule.name, p.type, p.target, p.params, now)
        self.metrics.escalations.labels(p.type).inc()
        outcome = self.runner.run_action(inc["id"], action_id, kind="escalation")
        if outcome is not None and outcome.state == "waiting":  # another step took the slot meanwhile
            self.ledger.audit("escalation:held", {"step": index + 1, "reason": outcome.reason,
                                                  "detail": outcome.detail}, self.clock(), incident_id=inc["id"])
            return "waits"
        return "ran" if outcome is not None and outcome.state == "succeeded" else "stopped"

    def verify_and_escalate(self, incident_id: int, again: bool = False) -> bool:
        """Verify, and escalate step by step while the verification does not hold. True when the
        next step waits for a rail that can clear: the engine calls this again later, and it goes on
        from the steps already taken (counted from the audit trail), verifying first."""
        inc = self.ledger.get_incident(incident_id)
        rule = self.rules.get(inc["rule"]) if inc else None
        if rule is None or rule.verify is None:
            return False
        steps = rule.escalate.steps[:rule.escalate.max_steps]
        events = [a["event"] for a in inc.get("audit", [])]
        taken = events.count("escalation:act") - events.count("escalation:held")  # steps that ran
        for index in range(min(taken, len(steps)), len(steps) + 1):
            if self.stopping() or inc["alert_status"] != "firing":
                return False  # nothing escalates after a resolve
            result = self._verify(rule, inc, again)
            next_step = after_verification(result, rule)
            if next_step == "verified":
                return False
            if next_step == "withhold":
                self.ledger.audit("escalation_withheld", {"reason": "unverifiable", "detail": result.detail},
                                  self.clock(), incident_id=incident_id)
                self.metrics.blocked.labels("unverifiable").inc()
                self._gave_up(inc, f"verification unknown, left to people: {result.detail}")
                return False
            if index == len(steps):
                if steps:
                    self.ledger.audit("escalation_exhausted", {"steps": index}, self.clock(), incident_id=incident_id)
                self._gave_up(inc, f"not verified after {index} escalation step(s): {result.detail}")
                return False
            ran = self._escalate(rule, inc, index, again)
            if ran != "ran":
                return ran == "waits"
            inc = self.ledger.get_incident(incident_id)
        return False

    def _gave_up(self, inc: dict, detail: str) -> None:
        last = inc["actions"][-1] if inc.get("actions") else {}
        self.notify(Event("gave_up", inc["id"], last.get("type", "none"), "gave_up", last.get("target", ""),
                          f"Vigil gave up on incident {inc['id']} ({inc.get('alertname', '?')})", detail))

    # ---- a repair ladder going on after a failed step ----------------------------------------------

    def on_failure(self, incident_id: int) -> None:
        """An action of the ladder failed: plan the rule's on_failure steps (replace the node, or
        stop and mark it) one by one through the rails and run each that passes."""
        inc = self.ledger.get_incident(incident_id)
        rule = self.rules.get(inc["rule"]) if inc else None
        if rule is None or not rule.on_failure:
            return
        for index in range(len(rule.on_failure)):
            if self.stopping():
                return
            incident = incident_of(self.ledger.get_incident(incident_id) or inc)
            now = self.clock()
            decision = plan_on_failure(incident, rule, index, self.world(now))
            self.on_decision(incident, decision)
            self.ledger.audit(f"on_failure:{decision.outcome}", {"step": index + 1, "reason": decision.reason,
                                                                 "detail": decision.detail,
                                                                 "trace": list(decision.trace)}, now,
                              incident_id=incident_id)
            if decision.outcome != "act":
                return
            [p] = decision.actions
            action_id = self.ledger.append_action(incident_id, rule.name, p.type, p.target, p.params, now)
            outcome = self.runner.run_action(incident_id, action_id, kind="on_failure")
            if outcome is None or outcome.state != "succeeded":
                return

    def _validate(self, incident: Incident, node: str) -> tuple[bool, str]:
        """validate_node on the still-cordoned node before it returns to service."""
        params = {"node": node, "uuid": incident.labels.get("uuid", ""), "gpu": incident.labels.get("gpu", "")}
        outcome = self.ops.execute("validate_node", params, str(incident.id))
        self.ledger.audit("validate", {"node": node, "state": outcome.state, "detail": outcome.detail},
                          self.clock(), incident_id=incident.id)
        if outcome.state == "succeeded" and self.runner.rails is not None:
            self.runner.rails.expire(incident.id)
        return outcome.state == "succeeded", outcome.detail

    # ---- after the alert resolves ---------------------------------------------------------------

    def _gate(self, step: Step) -> Decision:
        decision = plan_step(step, self.world(self.clock()))
        if decision.outcome in ("defer", "wait"):  # tried again on the next tick: the node comes back
            raise _Deferred(decision.detail)
        if decision.outcome != "act":
            self.on_decision(step.incident, decision)
            self.ledger.audit(f"{step.kind}_blocked", {"reason": decision.reason, "detail": decision.detail,
                                                       "trace": list(decision.trace)}, self.clock(),
                              incident_id=step.incident.id)
        return decision

    def _restores(self, rule: Rule, incident: Incident, inc: dict) -> list[str]:
        done = []
        for a in inc["actions"]:
            if not (ACTIONS.get(a["type"]) and ACTIONS[a["type"]].restorable and a["state"] == "succeeded"
                    and "original" in a["result"]
                    and str(a["params"].get("restore_on_resolve", "")).lower() in ("true", "1", "yes")):
                continue
            owner = self.ops.owner_of(a["type"], a["params"], a["result"])
            step = Step("restore", incident, rule, (PlannedAction(a["type"], a["target"], a["params"]),), owner=owner)
            decision = self._gate(step)
            if decision.outcome != "act":
                done.append(f"restore of {a['type']}({a['target']}) blocked ({decision.reason}): {decision.detail}")
                continue
            outcome = self.ops.restore(a["type"], a["params"], a["result"], str(incident.id))
            done.append(f"restore of {a['type']}({a['target']}): {outcome.detail}")
        return done

    def _uncordons(self, rule: Rule, incident: Incident, inc: dict) -> list[str]:
        nodes = still_out(inc)
        if not nodes:
            return []
        check = self.poll(rule.uncordon_on_resolved or Check(), incident.id, alert_context(incident))
        done = []
        for node in nodes:
            if check.outcome != HOLDS:
                done.append(f"{node} left cordoned: recovery {check.outcome.replace('_', ' ')} ({check.detail})")
                continue
            done.append(self._uncordon(rule, incident, node))
        return done

    def _uncordon(self, rule: Rule, incident: Incident, node: str) -> str:
        params = {"node": node, "only_incident": "true"}
        step = Step("uncordon", incident, rule, (PlannedAction("uncordon_node", node, params),))
        if (held := self._uncordon_held(step, node)) is not None:
            return held
        # the validation Job changes the cluster too: it runs only once the uncordon has passed the rails
        # (not paused, not dry-run, still Vigil's cordon), never before; a ladder with a validation step
        # validates whatever the rule's on_resolved says (the resolve cut it short before its own)
        if rule.validate_on_resolved or _validates(rule):
            valid, why = self._validate(incident, node)
            if not valid:
                return f"{node} left cordoned: validation did not pass ({why})"
            # the Job ran for up to its timeout: a pause (or a foreign cordon) set meanwhile must hold
            state = self.safety_state(self.clock())
            if state.paused or state.breaker_open:
                self.ledger.audit("uncordon_deferred", {"node": node, "reason": "paused" if state.paused else "breaker",
                                                        "detail": "set while the validation ran; tried again later"},
                                  self.clock(), incident_id=incident.id)
                raise _Deferred(f"{node}: remediation paused or breaker open during the validation")
            if (held := self._uncordon_held(step, node)) is not None:
                return held
        outcome = self.ops.execute("uncordon_node", params, str(incident.id))
        if outcome.reason == "not_owner" or outcome.detail == "already schedulable":
            self._drop_claim(incident, node, f"someone else changed the node: {outcome.detail}")
        return f"uncordon {node}: {outcome.detail}"

    def _uncordon_held(self, step: Step, node: str) -> str | None:
        """Why the uncordon does not run now (the rails, asked afresh), or None."""
        decision = self._gate(step)
        if decision.reason == "foreign_cordon":
            self._drop_claim(step.incident, node, decision.detail)
            return f"{node} left as it is: {decision.detail}"
        if decision.outcome != "act":
            return f"{node} left cordoned ({decision.reason}): {decision.detail}"
        return None

    def _drop_claim(self, incident: Incident, node: str, detail: str) -> None:
        """Someone else changed the node since Vigil cordoned it: Vigil lets go for good."""
        self.ledger.audit("claim_dropped", {"node": node, "detail": detail}, self.clock(), incident_id=incident.id)
        self.ops.drop_claim(node, str(incident.id), detail)

    def after_resolve(self, inc: dict) -> None:
        """Restores and uncordons, each through the gate. While paused globally or with the breaker
        open nothing runs and the next tick tries again; any other block is recorded and the rest is
        left to people."""
        rule = self.rules.get(inc["rule"])
        done: list[str] = []
        if rule is not None and self.ops is not None:
            state = self.safety_state(self.clock())  # cheap: no cluster read while waiting
            if state.paused or state.breaker_open:
                return
            incident = incident_of(inc)
            try:
                done = self._restores(rule, incident, inc)
                if rule.uncordon_on_resolved is not None or _cut_short(rule, inc):  # the ladder's return runs
                    done += self._uncordons(rule, incident, inc)
            except _Deferred as exc:
                log.warning("incident %d: follow-up deferred to the next tick: %s", inc["id"], exc)
                return
        self.ledger.mark_after_resolve(inc["id"], "; ".join(done) or "nothing to do", self.clock())
        log.info("incident %d resolved: %s", inc["id"], "; ".join(done) or "nothing to do")
