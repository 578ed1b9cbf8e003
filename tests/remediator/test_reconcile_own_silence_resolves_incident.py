"""Adversarial: Vigil's own repair silence makes the Alertmanager reconcile resolve the incident it is
repairing, and the fault is then forgotten for good.

Before a reboot or GPU reset, `RepairRails._silence` creates an Alertmanager silence with the default
matcher `node="<node>"` (remediator/domain/repair.py SilenceSettings.matchers): it silences every alert
of the node, the triggering one included. `AlertmanagerAlerts._firing` (remediator/cluster/alert_source.py)
asks GET /api/v2/alerts with `silenced=false`, so the still-firing, Vigil-silenced alert is missing from
the answer; after two polls `AlertReconciler._gone` (remediator/runtime/reconcile.py) records it
*resolved* while the fault still fires: the remaining ladder steps are cancelled, after_resolve validates
and uncordons a node whose fault is still present, and nothing escalates.

When the silence is later expired (chain end or validation), Alertmanager lists the alert again with the
same startsAt. The reconciler sees it as "new" (ledger.firing() no longer has it) and records it every
pass; the intake treats it as a repeat of a known incident (remediator/store/intake.py `_duplicates`:
"a repeat ... nothing new"): the fault is never acted on again, and each pass counts it as recorded
again (vigil_reconciled_alerts_total{result="recorded"} and a WARNING log every interval, forever)."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.cluster.alert_source import AlertmanagerAlerts
from remediator.cluster.silences import Silences
from remediator.domain.payload import Alert
from remediator.domain.repair import SilenceSettings
from remediator.runtime.reconcile import AlertReconciler
from remediator.store.ledger import SQLiteLedger
from tests.remediator.fake_alertmanager import FakeAlertmanager

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
LABELS = {"alertname": "GpuXidCritical", "node": "gpu-1", "severity": "critical", "xid": "79"}
FP = "00000000000000a1"


@pytest.fixture
def am():
    fake = FakeAlertmanager()
    yield fake
    fake.close()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def test_vigils_own_repair_silence_resolves_the_incident_it_repairs(tmp_path, am):
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    clock = Clock()
    # the fault fires in Alertmanager and reached Vigil by webhook
    am.alerts.append({"labels": LABELS, "startsAt": "2026-12-07T02:59:00Z", "fingerprint": FP, "receiver": "vigil"})
    ledger.record([Alert("firing", dict(LABELS), {}, dt.datetime(2026, 12, 7, 2, 59, tzinfo=dt.UTC),
                         dt.datetime(1, 1, 1, tzinfo=dt.UTC), FP)], T0)
    reconciler = AlertReconciler(ledger, AlertmanagerAlerts((am.url,), "vigil", 5.0), clock)
    clock.now += dt.timedelta(seconds=30)
    assert reconciler.run_once() == (0, 0)  # consistent
    # the ladder reaches its reboot: Vigil silences the node's alerts (the default matcher)
    sid = Silences(SilenceSettings(alertmanager_url=am.url)).create(node="gpu-1", uuid="", incident="1",
                                                                    reason="reboot_node", now=clock.now)
    for _ in range(2):  # two reconcile intervals during the reboot; the fault still fires in Alertmanager
        clock.now += dt.timedelta(seconds=30)
        reconciler.run_once()
    [inc] = ledger.list_incidents(status=None, alertname=None, limit=10, offset=0)[0]
    full = ledger.get_incident(inc["id"])
    assert full["alert_status"] == "firing", (
        "the reconcile recorded the incident resolved while its alert still fires (only silenced by Vigil "
        f"itself, silence {sid}): status {full['status']}, alert_status {full['alert_status']}")


def test_a_fault_resolved_by_reconcile_is_never_taken_up_again_when_it_reappears(tmp_path, am):
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    clock = Clock()
    am.alerts.append({"labels": LABELS, "startsAt": "2026-12-07T02:59:00Z", "fingerprint": FP, "receiver": "vigil"})
    ledger.record([Alert("firing", dict(LABELS), {}, dt.datetime(2026, 12, 7, 2, 59, tzinfo=dt.UTC),
                         dt.datetime(1, 1, 1, tzinfo=dt.UTC), FP)], T0)
    reconciler = AlertReconciler(ledger, AlertmanagerAlerts((am.url,), "vigil", 5.0), clock)
    silences = Silences(SilenceSettings(alertmanager_url=am.url))
    sid = silences.create(node="gpu-1", uuid="", incident="1", reason="reboot_node", now=clock.now)
    for _ in range(3):
        clock.now += dt.timedelta(seconds=30)
        reconciler.run_once()
    silences.expire(sid)  # the chain ended; the fault is still there and Alertmanager lists it again
    recorded = 0
    for _ in range(5):
        clock.now += dt.timedelta(seconds=30)
        recorded += reconciler.run_once()[0]
    rows = ledger.list_incidents(status=None, alertname=None, limit=10, offset=0)[0]
    firing = [r for r in rows if ledger.get_incident(r["id"])["alert_status"] == "firing"]
    assert firing, ("the still-firing fault is listed by Alertmanager again but no incident fires in Vigil: "
                    f"it is never acted on again ({[(r['id'], r['status']) for r in rows]})")
    assert recorded <= 1, f"the same alert was 'recorded' {recorded} times in 5 passes (log and metric spam)"
