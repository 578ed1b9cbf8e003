"""Adversarial: one Alertmanager replica restarts and the reconcile resolves every firing incident.

Alertmanager HA peers gossip silences and the notification log, *not alerts*: a restarted replica
answers GET /api/v2/alerts with `[]` until Prometheus re-sends its alerts (its resend_delay, 1 min by
default, after its next evaluation). `AlertmanagerAlerts.firing` (remediator/cluster/alert_source.py,
docstring: "they gossip alerts") uses the first peer that answers; with the default 30 s reconcile
interval two polls of the empty replica fall in that minute, and `AlertReconciler._gone`
(remediator/runtime/reconcile.py) records every firing incident resolved: running ladders' planned
steps are cancelled, waiting faults are dropped, and (see test_reconcile_own_silence_resolves_incident)
when the alerts come back with the same startsAt they are never taken up again."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.cluster.alert_source import AlertmanagerAlerts
from remediator.domain.payload import Alert
from remediator.runtime.reconcile import AlertReconciler
from remediator.store.ledger import SQLiteLedger
from tests.remediator.fake_alertmanager import FakeAlertmanager

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def peers():
    a, b = FakeAlertmanager(), FakeAlertmanager()
    yield a, b
    a.close()
    b.close()


def test_a_restarted_alertmanager_peer_does_not_resolve_every_incident(tmp_path, peers):
    am1, am2 = peers
    starts = "2026-12-07T02:59:00Z"
    alerts = [{"labels": {"alertname": "GpuXidCritical", "node": f"gpu-{i}", "severity": "critical"},
               "startsAt": starts, "fingerprint": f"{i:016x}", "receiver": "vigil-remediator"} for i in range(8)]
    am1.alerts, am2.alerts = list(alerts), list(alerts)
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    ledger.record([Alert("firing", a["labels"], {}, dt.datetime(2026, 12, 7, 2, 59, tzinfo=dt.UTC),
                         dt.datetime(1, 1, 1, tzinfo=dt.UTC), a["fingerprint"]) for a in alerts], T0)
    now = [T0]
    reconciler = AlertReconciler(ledger, AlertmanagerAlerts((am1.url, am2.url), "vigil-remediator", 5.0),
                                 lambda: now[0])
    now[0] += dt.timedelta(seconds=30)
    assert reconciler.run_once() == (0, 0)
    am1.alerts = []  # am1 restarts: empty until Prometheus re-sends (resend_delay 1m); am2 still has them all
    resolved = 0
    for _ in range(2):  # two 30 s reconcile passes within that minute
        now[0] += dt.timedelta(seconds=30)
        resolved += reconciler.run_once()[1]
    assert resolved == 0, f"{resolved} of 8 firing incidents resolved because one Alertmanager peer restarted"
