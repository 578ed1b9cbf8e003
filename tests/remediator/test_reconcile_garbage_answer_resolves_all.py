"""Adversarial: an Alertmanager (or a proxy in front of it) that answers 200 with a list Vigil cannot
parse resolves every firing incident.

`AlertmanagerAlerts._firing` (remediator/cluster/alert_source.py) skips every entry that is not a dict
or fails `parse_alert` and returns what is left; a body of nothing but garbage is then "no alert fires".
`AlertReconciler._gone` (remediator/runtime/reconcile.py) records every firing incident resolved after two
such answers: planned steps are cancelled, waiting faults are dropped, after_resolve runs. The module's
own rule is "unknown is not resolved": an answer none of whose alerts can be read is unknown."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from remediator.cluster.alert_source import AlertmanagerAlerts, AlertSourceError
from remediator.domain.payload import Alert
from remediator.runtime.reconcile import AlertReconciler
from remediator.store.ledger import SQLiteLedger
from tests.remediator.fake_alertmanager import FakeAlertmanager

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def am():
    fake = FakeAlertmanager()
    yield fake
    fake.close()


@pytest.mark.parametrize("garbage", [
    # a newer/other API shape: the alert nested one level down
    [{"alert": {"labels": {"alertname": "GpuXidCritical", "node": f"gpu-{i}"}}} for i in range(8)],
    # a proxy's list of strings
    ["error", "upstream timeout"],
    # fingerprints missing (an API gateway stripping fields)
    [{"labels": {"alertname": "GpuXidCritical", "node": f"gpu-{i}"}, "startsAt": "2026-12-07T02:59:00Z"}
     for i in range(8)],
])
def test_an_unparseable_answer_does_not_resolve_every_incident(tmp_path, am, garbage):
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    starts = dt.datetime(2026, 12, 7, 2, 59, tzinfo=dt.UTC)
    ledger.record([Alert("firing", {"alertname": "GpuXidCritical", "node": f"gpu-{i}", "severity": "critical"},
                         {}, starts, dt.datetime(1, 1, 1, tzinfo=dt.UTC), f"{i:016x}") for i in range(8)], T0)
    now = [T0]
    reconciler = AlertReconciler(ledger, AlertmanagerAlerts((am.url,), "vigil", 5.0), lambda: now[0])
    am.raw = json.dumps(garbage)
    for _ in range(3):
        now[0] += dt.timedelta(seconds=200)
        with pytest.raises(AlertSourceError, match="not an Alertmanager alert"):  # unknown: the loop logs it
            reconciler.run_once()
    assert len(ledger.firing()) == 8, "an answer none of whose alerts parsed resolved firing incidents"
