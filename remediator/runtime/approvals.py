"""Approvals as durable ledger state: which gated step of which incident a person was asked about,
approved or denied, by whom and why. Kept under one state key of the ledger (SQLite's state table,
or the Kubernetes ledger's VigilState), so an approval survives a restart and a failover to another
replica, and the engine reads all of them once per tick. Answered through POST
/api/incidents/<id>/approve|deny (admin role) or `remediator approve|deny ID --reason`."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable

from remediator.domain.approvals import APPROVED, DENIED, PENDING, Approval
from remediator.domain.approvals import Approvals as ApprovalMap
from remediator.domain.models import Decision, Incident
from remediator.runtime.notify import Event, approval_event
from remediator.store.ledger import Ledger, from_ts, ts

log = logging.getLogger(__name__)
APPROVALS_KEY = "approvals"
KEEP = 7 * 86400.0  # answers and requests older than this are dropped (an approval lasts approval_ttl anyway)


class NotAwaiting(LookupError):
    """The incident has no step waiting for a person's answer (the API answers 409)."""


class Approvals:
    def __init__(self, ledger: Ledger, clock: Callable[[], dt.datetime], notify: Callable[[Event], None],
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.ledger, self.clock, self.notify, self.on_change = ledger, clock, notify, on_change
        self._lock = threading.Lock()  # read-modify-write of the one key, within this process

    def _raw(self) -> dict[str, dict[str, dict]]:
        value = self.ledger.get_state(APPROVALS_KEY)
        try:
            data = json.loads(value) if value else {}
        except ValueError:
            log.error("the ledger's approvals are not JSON; treating them as none")
            data = {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, dict]], now: dt.datetime) -> None:
        cutoff = now - dt.timedelta(seconds=KEEP)
        kept = {i: {k: a for k, a in steps.items() if (from_ts(a.get("at")) or now) >= cutoff}
                for i, steps in data.items()}
        self.ledger.set_state(APPROVALS_KEY, json.dumps({i: s for i, s in kept.items() if s}, sort_keys=True))

    def read(self) -> ApprovalMap:
        """incident id -> step -> Approval, as the rails read them."""
        out: dict[int, dict[str, Approval]] = {}
        for incident, steps in self._raw().items():
            try:
                out[int(incident)] = {k: Approval(a["verdict"], from_ts(a["at"]), a.get("by", ""), a.get("reason", ""))
                                      for k, a in steps.items()}
            except (KeyError, TypeError, ValueError):
                log.error("unreadable approvals for incident %s; ignored", incident)
        return out

    def version(self) -> str | None:
        """Changes whenever an approval is asked for or answered (the engine's change detection)."""
        return self.ledger.get_state(APPROVALS_KEY)

    def ask(self, incident: Incident, decision: Decision) -> bool:
        """A decision waits for approval of decision.step: record the request and notify, once."""
        if decision.reason != "approval" or not decision.step or incident.id is None:
            return False
        now = self.clock()
        with self._lock:
            data = self._raw()
            steps = data.setdefault(str(incident.id), {})
            known = steps.get(decision.step)
            if known is not None and known.get("verdict") == PENDING:
                return False
            steps[decision.step] = {"verdict": PENDING, "at": ts(now), "detail": decision.detail}
            self._write(data, now)
        action, _, target = decision.step.partition("(")
        self.ledger.audit("approval_requested", {"step": decision.step, "detail": decision.detail}, now,
                          incident_id=incident.id)
        log.warning("incident %s: %s awaits approval: %s", incident.id, decision.step, decision.detail)
        self.notify(approval_event(incident, decision.step, action, target.rstrip(")"), decision.detail))
        return True

    def pending(self, incident_id: int) -> list[str]:
        return sorted(k for k, a in self._raw().get(str(incident_id), {}).items() if a.get("verdict") == PENDING)

    def answer(self, incident_id: int, verdict: str, *, by: str, reason: str, step: str | None = None) -> dict:
        """Approve or deny the steps of the incident that wait for a person (or the one named);
        raises NotAwaiting when none does."""
        if verdict not in (APPROVED, DENIED):
            raise ValueError(f"verdict {verdict!r}")
        now = self.clock()
        with self._lock:
            data = self._raw()
            steps = data.get(str(incident_id), {})
            asked = sorted(k for k, a in steps.items() if a.get("verdict") == PENDING)
            chosen = [step] if step is not None and step in asked else asked if step is None else []
            if not chosen:
                what = f"step {step!r} of incident {incident_id}" if step else f"incident {incident_id}"
                raise NotAwaiting(f"{what} is not waiting for approval"
                                  + (f" (waiting: {', '.join(asked)})" if asked else ""))
            for k in chosen:
                steps[k] = {"verdict": verdict, "at": ts(now), "by": by, "reason": reason}
            self._write(data, now)
        for k in chosen:
            self.ledger.audit(verdict, {"step": k, "by": by, "reason": reason}, now, incident_id=incident_id)
            log.warning("incident %d: %s %s by %s: %s", incident_id, k, verdict, by, reason)
        self.on_change()
        return {"incident": incident_id, "steps": chosen, "verdict": verdict, "by": by, "reason": reason,
                "at": ts(now)}
