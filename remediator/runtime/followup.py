"""After the actions: verify through Prometheus, escalate along the rule's ladder when the
verification fails, and, once the alert resolves, restore what the rule asked to restore
(HTTPRoute weights, a Service's selector) and uncordon only after the recovery check holds."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from remediator.cluster import executor as actions
from remediator.domain.policy import ACTIONS, Check, context_of, target_of

if TYPE_CHECKING:
    from remediator.runtime.engine import Engine

log = logging.getLogger(__name__)


class Followup:
    def __init__(self, engine: Engine) -> None:
        self.e = engine

    def _check(self, check: Check, incident_id: int, context: dict) -> tuple[bool, str]:
        """Poll the check until it holds or its deadline passes."""
        if check.query is None and not check.alert_resolved:
            return True, "no recovery check configured"
        deadline = time.monotonic() + check.deadline
        detail = "not evaluated"
        while True:
            if check.alert_resolved:
                inc = self.e.ledger.get_incident(incident_id) or {}
                if inc.get("alert_status") == "resolved":
                    return True, "the triggering alert resolved"
                detail = "the triggering alert still fires"
            if check.query is not None:
                if self.e.prom is None:
                    return False, "no Prometheus configured"
                result = self.e.prom.check(check.render(context))
                if result.holds:
                    return True, result.detail
                detail = result.detail
            if time.monotonic() + check.interval > deadline:
                return False, f"{detail} (deadline {check.deadline:.0f} s)"
            time.sleep(check.interval)

    def verify_and_escalate(self, incident_id: int) -> None:
        inc = self.e.ledger.get_incident(incident_id)
        rule = self.e.rules.get(inc["rule"]) if inc else None
        if rule is None or rule.verify is None:
            return
        context = context_of(inc["labels"], inc["annotations"])
        steps = rule.escalate.steps[:rule.escalate.max_steps]
        taken = 0
        while not self.e._stop.is_set():
            last = inc["actions"][-1]["type"] if inc["actions"] else ""
            ok, detail = self._check(rule.verify, incident_id, context)
            now = self.e.clock()
            self.e.metrics.verifications.labels(last, "verified" if ok else "failed").inc()
            self.e.ledger.set_verification(incident_id, "verified" if ok else "not_verified", detail, now)
            if ok or taken >= len(steps):
                if not ok and steps:
                    self.e.ledger.audit("escalation_exhausted", {"steps": taken}, now, incident_id=incident_id)
                return
            step = steps[taken]
            params = step.render(context)
            target = target_of(step.type, params)
            since = now - dt.timedelta(seconds=rule.escalate.window)
            loops = {a.incident_id for a in self.e.ledger.history(since) if a.rule == rule.name and
                     a.type == step.type and a.target == target and a.incident_id != incident_id}
            if len(loops) >= rule.escalate.max_loops_per_target:
                self.e.ledger.audit("escalation_capped", {"target": target, "loops": len(loops)}, now,
                                    incident_id=incident_id)
                return
            action_id = self.e.ledger.append_action(incident_id, rule.name, step.type, target, params, now)
            self.e.metrics.escalations.labels(step.type).inc()
            taken += 1
            outcome = self.e.run_action(incident_id, action_id)
            if outcome is None or outcome.state != "succeeded":
                return
            inc = self.e.ledger.get_incident(incident_id)

    def on_failure(self, incident_id: int) -> None:
        """An action of the ladder failed: run the rule's on_failure steps in order (replace the
        node, or stop and mark it), each recorded on the incident like an escalation step."""
        inc = self.e.ledger.get_incident(incident_id)
        rule = self.e.rules.get(inc["rule"]) if inc else None
        if rule is None or not rule.on_failure:
            return
        context = context_of(inc["labels"], inc["annotations"])
        self.e.ledger.audit("on_failure", {"steps": [s.type for s in rule.on_failure]}, self.e.clock(),
                            incident_id=incident_id)
        for step in rule.on_failure:
            params = step.render(context)
            action_id = self.e.ledger.append_action(incident_id, rule.name, step.type, target_of(step.type, params),
                                                    params, self.e.clock())
            outcome = self.e.run_action(incident_id, action_id)
            if outcome is None or outcome.state != "succeeded" or self.e._stop.is_set():
                return

    def _validate(self, inc: dict, node: str) -> tuple[bool, str]:
        """validate_node on the still-cordoned node before it returns to service."""
        params = {"node": node, "uuid": inc["labels"].get("uuid", ""), "gpu": inc["labels"].get("gpu", "")}
        outcome = actions.execute(self.e.kube, "validate_node", params, str(inc["id"]), self.e.repair)
        self.e.ledger.audit("validate", {"node": node, "state": outcome.state, "detail": outcome.detail},
                            self.e.clock(), incident_id=inc["id"])
        if outcome.state == "succeeded":
            self.e.repair_rails.expire(inc["id"])
        return outcome.state == "succeeded", outcome.detail

    def after_resolve(self, inc: dict) -> None:
        rule = self.e.rules.get(inc["rule"])
        done = []
        if rule is not None and self.e.workloads is not None:
            for a in inc["actions"]:
                spec = ACTIONS.get(a["type"])
                if spec and spec.restores and a["state"] == "succeeded" and "original" in a["result"] and \
                        str(a["params"].get("restore_on_resolve", "")).lower() in ("true", "1", "yes"):
                    try:
                        done.append(actions.restore(self.e.workloads, a["type"], a["params"], a["result"],
                                                    str(inc["id"])))
                    except Exception as exc:
                        done.append(f"restore of {a['type']} failed: {exc}")
            if rule.uncordon_on_resolved is not None:
                nodes = {a["params"].get("node") for a in inc["actions"]
                         if a["type"] in ("cordon_node", "drain_node", "reboot_node") and a["state"] == "succeeded"}
                ok, detail = self._check(rule.uncordon_on_resolved, inc["id"],
                                         context_of(inc["labels"], inc.get("annotations", {})))
                for node in sorted(n for n in nodes if n):
                    if not ok:
                        done.append(f"{node} left cordoned: recovery not verified ({detail})")
                        continue
                    if rule.validate_on_resolved:
                        valid, why = self._validate(inc, node)
                        if not valid:
                            done.append(f"{node} left cordoned: validation did not pass ({why})")
                            continue
                    outcome = actions.execute(self.e.kube, "uncordon_node", {"node": node}, str(inc["id"]))
                    done.append(f"uncordon {node}: {outcome.detail}")
        self.e.ledger.mark_after_resolve(inc["id"], "; ".join(done) or "nothing to do", self.e.clock())
        log.info("incident %d resolved: %s", inc["id"], "; ".join(done) or "nothing to do")
