"""Adversarial: a flood of waiting incidents starves every new alert while the cluster keeps changing.

`Engine._tick` asks `ledger.due(now, wake_waiting=changed)`. With `wake_waiting` (any nudge, any pod or
node event seen by the cache: in a busy GPU cluster, every tick) `due()` returns the waiting incidents
first, ordered by severity, startsAt and id, not by `not_before`, and fills the batch (DUE_BATCH = 200)
with them before it looks at `pending` ones. With >= DUE_BATCH incidents waiting (a storm held by the
budget or a pause), every tick re-decides the same 200 heads and a new alert, however critical, is
never decided: it is not waiting (so max_wait never hands it over) and never acts.
The waiting tail behind the 200 heads is starved the same way."""

from __future__ import annotations

import datetime as dt

from remediator.domain.models import Decision
from remediator.domain.payload import Alert
from remediator.store.ledger import DUE_BATCH, SQLiteLedger

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


def _alert(i: int, severity: str, starts: dt.datetime) -> Alert:
    labels = {"alertname": "GpuXidCritical", "node": f"gpu-{i}", "severity": severity}
    return Alert("firing", labels, {}, starts, dt.datetime(1, 1, 1, tzinfo=dt.UTC), f"{i:016x}")


def test_pending_critical_alert_never_due_behind_a_waiting_flood(tmp_path):
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    n = DUE_BATCH + 50
    ledger.record([_alert(i, "critical", T0) for i in range(n)], T0)
    # the storm: every one held by the budget (a rail that can clear), re-checked in 30 s at the latest
    for inc in ledger.due(T0, limit=10_000):
        ledger.save_decision(inc.id, Decision("wait", "xid", reason="budget", detail="2 of 2 nodes out",
                                              not_before=T0 + dt.timedelta(seconds=30)), T0)
    # a new critical fault arrives; the cluster keeps changing, so every tick has wake_waiting=True
    later = T0 + dt.timedelta(seconds=5)
    ledger.record([_alert(99_999, "critical", later)], later)
    new_id = max(i["id"] for i in ledger.list_incidents(status="pending", alertname=None, limit=10, offset=0)[0])
    decided_ever: set[int] = set()
    now = later
    for _tick in range(100):  # 100 ticks, each re-deciding what due() gave (all still wait)
        now += dt.timedelta(seconds=1)
        due = ledger.due(now, wake_waiting=True)
        decided_ever |= {i.id for i in due}
        for inc in due:
            ledger.save_decision(inc.id, Decision("wait", "xid", reason="budget", detail="2 of 2 nodes out",
                                                  not_before=now + dt.timedelta(seconds=30)), now)
    assert new_id in decided_ever, "a new critical alert was never decided in 100 ticks behind the waiting flood"
    assert len(decided_ever) == n + 1, f"only {len(decided_ever)} of {n + 1} incidents were ever decided"
