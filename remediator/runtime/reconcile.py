"""Reconcile the firing set against Alertmanager's: the webhook is the fast path, this is the level.

Every reconcile interval the leader reads the alerts routed to Vigil's receiver
(GET /api/v2/alerts, silenced and inhibited ones included). An active alert Vigil never heard of
(a webhook lost, or sent while Vigil was down longer than Alertmanager retried) is recorded as if
it had arrived (a silenced one is not: people silenced it). An incident Vigil holds as firing that
Alertmanager no longer lists at all (silenced still counts as listed: Vigil silences the nodes it
repairs) is recorded resolved only once it has been missing from every answer for RESOLVE_AFTER
and from at least two, and was recorded before the first (a restarted peer answers with fewer
alerts until Prometheus sends them again; an alert can reach Vigil by webhook a moment before
Alertmanager lists it). An empty answer resolves nothing, and when no Alertmanager answers with a
readable list nothing is changed: unknown is not resolved."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

from remediator.cluster.alert_source import AlertmanagerAlerts, AlertSourceError
from remediator.domain.models import Incident
from remediator.domain.payload import Alert
from remediator.store.ledger import Ledger
from remediator.store.views import ts

log = logging.getLogger(__name__)
RESOLVE_AFTER = 300.0  # seconds an incident must be missing from Alertmanager's answers to be resolved


def _key(fingerprint: str, starts_at: dt.datetime) -> tuple[str, str]:
    return fingerprint.lower(), ts(starts_at)


@dataclass
class AlertReconciler:
    ledger: Ledger
    source: AlertmanagerAlerts
    clock: Callable[[], dt.datetime]
    counter: Counter | None = None  # vigil_reconciled_alerts_total{result}
    _missing: dict[tuple[str, str], dt.datetime] = field(default_factory=dict)  # key -> the poll that missed it
    _last_poll: dt.datetime | None = None

    def run_once(self) -> tuple[int, int]:
        """(recorded, resolved); AlertSourceError when no Alertmanager answered (nothing changes)."""
        now = self.clock()
        listed = self.source.firing()
        present = {_key(a.fingerprint, a.starts_at) for a, _ in listed}
        known = {_key(i.fingerprint, i.starts_at): i for i in self.ledger.firing()}
        new = [a for a, state in listed if state == "active" and _key(a.fingerprint, a.starts_at) not in known]
        if new:
            self.ledger.record(new, now)
        gone = self._gone(known, present, now) if listed else []
        if gone:
            self.ledger.record([_resolved(i, now) for i in gone], now)
        self._count(len(new), len(gone))
        if new or gone:
            log.warning("reconciled with Alertmanager: %d firing alert(s) recorded that no webhook brought, "
                        "%d incident(s) resolved that Alertmanager no longer has", len(new), len(gone))
        self._last_poll = now
        return len(new), len(gone)

    def _gone(self, known: dict[tuple[str, str], Incident], present: set, now: dt.datetime) -> list[Incident]:
        missing = {k: self._missing.get(k, now) for k in known if k not in present}
        self._missing = missing
        previous = self._last_poll
        return [known[k] for k, first in missing.items() if previous is not None and first <= previous
                and (now - first).total_seconds() >= RESOLVE_AFTER
                and known[k].received_at is not None and known[k].received_at < first]

    def _count(self, recorded: int, resolved: int) -> None:
        if self.counter is not None:
            self.counter.labels("recorded").inc(recorded)
            self.counter.labels("resolved").inc(resolved)


def _resolved(incident: Incident, now: dt.datetime) -> Alert:
    return Alert("resolved", dict(incident.labels), dict(incident.annotations), incident.starts_at, now,
                 incident.fingerprint)


class ReconcileLoop:
    """Runs the reconciler every `interval` seconds while this replica leads; a failure is logged
    and counted, never raised (the webhook path goes on)."""

    def __init__(self, reconciler: AlertReconciler, interval: float, leading: Callable[[], bool],
                 wake: Callable[[], None]) -> None:
        self.reconciler, self.interval, self._leading, self._wake = reconciler, interval, leading, wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-reconcile", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        """At once (a restart sees what it missed), then every interval."""
        while not self._stop.is_set():
            if self._leading():
                self.once()
            self._stop.wait(self.interval)

    def once(self) -> None:
        try:
            recorded, resolved = self.reconciler.run_once()
        except AlertSourceError as exc:
            log.warning("reconcile: Alertmanager did not answer (%s); nothing changed", exc)
            return
        except Exception:
            log.exception("reconcile failed")
            return
        if recorded or resolved:
            self._wake()

