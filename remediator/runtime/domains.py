"""Domain incidents: the shell around the pure correlation (remediator/domain/topology.py).

It reads the firing incidents from the ledger and the nodes' domains from the cluster view, and
keeps one domain incident per degraded domain: it records a `GpuDomainDegraded` alert for a domain
that became degraded (with the domain's own fingerprint, so recording it again is a duplicate, as
for any re-sent alert) and resolves it once fewer than the threshold of its members' faults still
fire. From then on a domain incident is an incident like any other: queued, decided through the
rails with a rule from `policy.domain_rules`, acted on, followed up."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from remediator.domain.models import ClusterView
from remediator.domain.topology import (
    DOMAIN_ALERT,
    EVIDENCE_ANNOTATION,
    MEMBERS_ANNOTATION,
    Correlation,
    Topology,
    correlate,
    domain_alert,
    resolved_alert,
)
from remediator.runtime.notify import Event
from remediator.store.ledger import Ledger

log = logging.getLogger(__name__)
IDLE_EVERY = 2.0  # seconds between correlations when nothing is due (a resolve makes nothing due)


class DomainIncidents:
    """Opens and resolves domain incidents; a no-op when topology.domains is empty."""

    def __init__(self, ledger: Ledger, topology: Topology, clock: Callable[[], dt.datetime],
                 notify: Callable[[Event], None] = lambda event: None) -> None:
        self.ledger, self.topology, self.clock, self.notify = ledger, topology, clock, notify
        self._last = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.topology.domains)

    def correlate(self, cluster: ClusterView) -> Correlation | None:
        """The degraded domains now (None when topology is off or the view is unavailable)."""
        if not self.enabled or not cluster.available:
            return None
        self._last = time.monotonic()
        return correlate(self.ledger.firing(), cluster, self.topology)

    def due(self) -> bool:
        """Whether an idle tick should correlate (resolutions come with no incident to decide)."""
        return self.enabled and time.monotonic() - self._last >= IDLE_EVERY

    def sync(self, corr: Correlation | None) -> bool:
        """Record the alerts that open and resolve domain incidents; whether any was recorded."""
        if corr is None:
            return False
        now = self.clock()
        opening, resolving = corr.to_open(), corr.to_resolve()
        if not opening and not resolving:
            return False
        self.ledger.record([*(domain_alert(d, now) for d in opening), *(resolved_alert(i, now) for i in resolving)],
                           now)
        for d in opening:
            log.warning("domain incident opened: %s", d.evidence())
        for i in resolving:
            log.info("domain incident %s resolved: %s domain %s is no longer degraded", i.id,
                     i.labels.get("domain_kind", ""), i.labels.get("domain", ""))
        return True

    def hand_over(self, incident_id: int) -> None:
        """A domain incident's ladder ran to its end: the domain is out, and its shared cause (a switch
        tray, power, cooling) is for people. The hand-over is recorded (audit `handed_over`) and
        notified (VigilRemediation, result handed_over) with the evidence: which nodes, which
        signals, in what order."""
        if not self.enabled:
            return
        inc = self.ledger.get_incident(incident_id)
        if not inc or inc.get("alertname") != DOMAIN_ALERT or inc.get("alert_status") != "firing":
            return
        labels, notes = inc.get("labels") or {}, inc.get("annotations") or {}
        domain = f"{labels.get('domain_kind', '')} domain {labels.get('domain', '')}"
        evidence = notes.get(EVIDENCE_ANNOTATION, "")
        done = [f"{a['type']}({a['target']})" for a in inc.get("actions", []) if a["state"] == "succeeded"]
        detail = {"domain": labels.get("domain", ""), "kind": labels.get("domain_kind", ""),
                  "members": notes.get(MEMBERS_ANNOTATION, ""), "evidence": evidence, "done": done}
        self.ledger.audit("handed_over", detail, self.clock(), incident_id=incident_id)
        self.notify(Event("acted", incident_id, "none", "handed_over", labels.get("domain", ""),
                          f"{domain} taken out ({len(done)} actions); handed to people", evidence))
        log.warning("domain incident %d handed to people: %s", incident_id, evidence)
