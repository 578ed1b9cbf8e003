"""What the engine does around repair actions:

- the repeat-offender stop: a node or GPU repaired `max_repairs` times within `window` (counted
  from the ledger, so it survives restarts) is not repaired again; it is marked an RMA candidate
  (label, reason, kept cordoned) and `vigil_repairs_exhausted_total` counts it;
- silences around planned disruptions: before a GPU reset or a reboot, an Alertmanager silence for
  the node's alerts (its id in the action's result and the audit trail), expired when validation
  passes, otherwise at the end of its grace period."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from remediator.cluster.kube import KubeError
from remediator.cluster.outcome import Outcome
from remediator.cluster.repair import RepairContext, mark_rma
from remediator.cluster.silences import SilenceError, Silences
from remediator.domain.actions import ACTIONS
from remediator.domain.repair import REPAIR_ACTIONS, RepairSettings, exhausted
from remediator.store.ledger import ActionRow, Ledger

log = logging.getLogger(__name__)
SILENCED = ACTIONS.of("silenced")  # planned disruptions whose side effects must not alert


class RepairRails:
    def __init__(self, *, ledger: Ledger, settings: RepairSettings, ctx: RepairContext | None,
                 on_exhausted: Callable[[], None], clock: Callable[[], dt.datetime]) -> None:
        self.ledger, self.settings, self.ctx, self.clock = ledger, settings, ctx, clock
        self.on_exhausted = on_exhausted
        self.silences = Silences(settings.silence) if settings.silence.alertmanager_url else None

    def _key(self, incident_id: int) -> str:
        return f"silences:{incident_id}"

    def exhausted(self, incident_id: int, labels: dict[str, str], params: dict[str, Any]) -> str | None:
        now = self.clock()
        records = self.ledger.repairs(now - dt.timedelta(seconds=self.settings.window))
        return exhausted(records, node=str(params.get("node", "")), uuid=str(params.get("uuid") or
                         labels.get("uuid", "")), settings=self.settings, now=now, incident_id=incident_id)

    def before(self, incident_id: int, incident: dict, row: ActionRow) -> tuple[Outcome | None, dict[str, Any]]:
        """(an Outcome that replaces the action, or None; data to add to the action's result)."""
        if row.type in REPAIR_ACTIONS:
            why = self.exhausted(incident_id, incident.get("labels") or {}, row.params)
            if why:
                return self._stop(incident_id, row.params["node"], why), {}
        if row.type in SILENCED and self.silences is not None:
            return None, self._silence(incident_id, row)
        return None, {}

    def mark(self, incident_id: int, node: str, why: str) -> None:
        """The rails refused a repair (repair_exhausted): mark the node an RMA candidate."""
        if node:
            self._stop(incident_id, node, why)

    def _stop(self, incident_id: int, node: str, why: str) -> Outcome:
        detail = why
        if self.ctx is not None:
            try:
                marked = self.ctx.kube.attempt(f"mark {node} an RMA candidate",  # transient errors retried
                                               lambda: mark_rma(self.ctx, node, why, str(incident_id)))
                detail = f"{why}; {marked.detail}"
            except (KubeError, ValueError) as exc:
                detail = f"{why}; marking {node} failed: {exc}"
        self.ledger.audit("repair_exhausted", {"node": node, "why": why}, self.clock(), incident_id=incident_id)
        self.on_exhausted()
        log.warning("incident %d: %s", incident_id, detail)
        return Outcome("blocked", detail, {"rma_candidate": node}, reason="repair_exhausted")

    def _silence(self, incident_id: int, row: ActionRow) -> dict[str, Any]:
        node, uuid = str(row.params.get("node", "")), str(row.params.get("uuid", ""))
        try:
            sid = self.silences.create(node=node, uuid=uuid, incident=str(incident_id), reason=row.type,
                                       now=self.clock())
        except SilenceError as exc:  # the repair goes on: a silence is a courtesy to people, not a rail
            self.ledger.audit("silence_failed", {"node": node, "error": str(exc)}, self.clock(),
                              incident_id=incident_id)
            return {"silence_error": str(exc)}
        ids = [*json.loads(self.ledger.get_state(self._key(incident_id)) or "[]"), sid]
        self.ledger.set_state(self._key(incident_id), json.dumps(ids))
        self.ledger.audit("silence_created", {"silence_id": sid, "node": node,
                                              "grace_seconds": self.settings.silence.grace}, self.clock(),
                          incident_id=incident_id)
        return {"silence_id": sid}

    def after(self, incident_id: int, row: ActionRow, outcome: Outcome) -> Outcome:
        if row.type == "validate_node" and outcome.state == "succeeded":
            expired = self.expire(incident_id)
            if expired:
                return dataclasses.replace(outcome, data={**outcome.data, "silences_expired": expired})
        return outcome

    def expire(self, incident_id: int) -> list[str]:
        if self.silences is None:
            return []
        ids = json.loads(self.ledger.get_state(self._key(incident_id)) or "[]")
        done = []
        for sid in ids:
            try:
                self.silences.expire(sid)
                done.append(sid)
                self.ledger.audit("silence_expired", {"silence_id": sid}, self.clock(), incident_id=incident_id)
            except SilenceError as exc:
                self.ledger.audit("silence_expire_failed", {"silence_id": sid, "error": str(exc)}, self.clock(),
                                  incident_id=incident_id)
        self.ledger.set_state(self._key(incident_id), None)
        return done
