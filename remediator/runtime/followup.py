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
from remediator.runtime.notify import Event

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
                if not ok:
                    self._gave_up(incident_id, last, f"not verified after {taken} escalation step(s): {detail}")
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
                self._gave_up(incident_id, step.type, f"escalation capped: {len(loops)} loop(s) on {target}")
                return
            action_id = self.e.ledger.append_action(incident_id, rule.name, step.type, target, params, now)
            self.e.metrics.escalations.labels(step.type).inc()
            taken += 1
            outcome = self.e.run_action(incident_id, action_id)
            if outcome is None or outcome.state != "succeeded":
                return
            inc = self.e.ledger.get_incident(incident_id)

    def _gave_up(self, incident_id: int, action: str, detail: str) -> None:
        inc = self.e.ledger.get_incident(incident_id) or {}
        target = inc["actions"][-1]["target"] if inc.get("actions") else ""
        self.e.notifier.notify(Event("gave_up", incident_id, action or "none", "gave_up", target,
                                     f"Vigil gave up on incident {incident_id} ({inc.get('alertname', '?')})", detail))

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
                         if a["type"] in ("cordon_node", "drain_node") and a["state"] == "succeeded"}
                ok, detail = self._check(rule.uncordon_on_resolved, inc["id"],
                                         context_of(inc["labels"], inc.get("annotations", {})))
                for node in sorted(n for n in nodes if n):
                    if not ok:
                        done.append(f"{node} left cordoned: recovery not verified ({detail})")
                        continue
                    outcome = actions.execute(self.e.kube, "uncordon_node", {"node": node}, str(inc["id"]))
                    done.append(f"uncordon {node}: {outcome.detail}")
        self.e.ledger.mark_after_resolve(inc["id"], "; ".join(done) or "nothing to do", self.e.clock())
        log.info("incident %d resolved: %s", inc["id"], "; ".join(done) or "nothing to do")
