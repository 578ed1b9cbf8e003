"""Approvals are ledger state: asked for by one replica, answered through another, read by the
next leader after a failover, on both ledgers (SQLite and VigilState on the local apiserver)."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.domain.models import Decision, Incident
from remediator.runtime.approvals import Approvals, NotAwaiting

from .payloads import alert, xid_labels
from .test_ledger_contract import NOW, Backend, alerts, backend  # noqa: F401  (the fixture, over both ledgers)

STEP = "reboot_node(n1)"


def _approvals(ledger, sent: list) -> Approvals:
    return Approvals(ledger, lambda: NOW, sent.append)


def test_a_request_survives_a_failover_and_is_answered_through_another_replica(backend: Backend):  # noqa: F811
    sent: list = []
    leader = _approvals(backend.open(), sent)
    leader.ledger.record(alerts(alert(xid_labels("n1"), starts_at=NOW)), NOW)
    [due] = leader.ledger.due(NOW)
    incident = Incident("f", NOW - dt.timedelta(seconds=30), {"alertname": "GpuXidCritical", "node": "n1"}, id=due.id)
    wait = Decision("wait", "r", reason="approval", detail=f"{STEP} needs approval", step=STEP)
    assert leader.ask(incident, wait) and not leader.ask(incident, wait), "asked once, not on every decision"
    [event] = sent
    assert (event.kind, event.incident, event.action, event.target) == ("awaiting_approval", due.id, "reboot_node",
                                                                        "n1")
    leader.ledger.close()  # the leader dies

    other = _approvals(backend.open(), sent)  # any replica takes the answer
    assert other.pending(due.id) == [STEP]
    with pytest.raises(NotAwaiting):
        other.answer(due.id + 1, "approved", by="alice@10.0.0.1", reason="checked")
    answer = other.answer(due.id, "approved", by="alice@10.0.0.1", reason="checked")
    assert answer["steps"] == [STEP]
    with pytest.raises(NotAwaiting):
        other.answer(due.id, "denied", by="bob", reason="too late")

    new_leader = _approvals(backend.open(), sent)
    a = new_leader.read()[due.id][STEP]
    assert (a.verdict, a.by, a.reason, a.at) == ("approved", "alice@10.0.0.1", "checked", NOW)
    assert a.valid(NOW + dt.timedelta(minutes=59), 3600) and not a.valid(NOW + dt.timedelta(hours=1), 3600)
    events = [e["event"] for e in new_leader.ledger.get_incident(due.id)["audit"]]
    assert events.count("approval_requested") == 1 and events.count("approved") == 1
