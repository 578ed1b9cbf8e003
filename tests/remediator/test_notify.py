"""Notifications never hold the engine up: a stuck Alertmanager fills a bounded queue, and what
does not fit is dropped and counted. Only the configured events are sent."""

from __future__ import annotations

import datetime as dt
import socket

from prometheus_client import CollectorRegistry

from remediator.domain.models import Decision, Incident, PlannedAction
from remediator.oncall_config import Notifications
from remediator.runtime.notify import QUEUE_SIZE, Event, Notifier, decision_events


def _value(reg: CollectorRegistry, result: str) -> float:
    return reg.get_sample_value("vigil_remediation_notifications_total", {"result": result}) or 0.0


def test_a_stuck_alertmanager_never_blocks_the_caller():
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(1)  # accepts the connection into the backlog, never answers
    reg = CollectorRegistry()
    n = Notifier(Notifications(alertmanager_urls=(f"http://127.0.0.1:{stuck.getsockname()[1]}",), timeout=2.0), reg)
    n.start()
    stuck.settimeout(30)
    conn = None
    try:
        n.notify(Event("acted", 0, "cordon_node", "succeeded", "node-1", "s"))
        conn, _ = stuck.accept()  # the sender is now inside its POST, waiting for an answer that never comes
        for i in range(QUEUE_SIZE + 50):
            n.notify(Event("acted", i + 1, "cordon_node", "succeeded", "node-1", "s"))
        assert n._queue.qsize() == QUEUE_SIZE and _value(reg, "dropped") == 50
    finally:
        n._queue.queue.clear()
        n.stop(timeout=10)
        if conn is not None:
            conn.close()
        stuck.close()
    assert _value(reg, "failed") == 1 and _value(reg, "sent") == 0  # the one POST it tried timed out


def test_only_configured_events_are_queued_and_the_alert_is_short_lived():
    reg = CollectorRegistry()
    n = Notifier(Notifications(alertmanager_urls=("http://127.0.0.1:9",), events=frozenset({"gave_up"}),
                               ends_after=120.0, labels={"cluster": "c1"}), reg)
    n.notify(Event("acted", 1, "cordon_node", "succeeded", "n1", "s"))
    assert n._queue.qsize() == 0
    n.notify(Event("gave_up", 1, "restart_pod", "gave_up", "", "s", "not verified"))
    assert n._queue.qsize() == 1
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    a = n.alert(n._queue.get_nowait(), now)
    assert a["labels"] == {"cluster": "c1", "alertname": "VigilRemediation", "incident": "1", "action": "restart_pod",
                           "result": "gave_up", "event": "gave_up"}  # the empty target is left out
    assert a["startsAt"] == "2026-01-01T00:00:00.000000Z" and a["endsAt"] == "2026-01-01T00:02:00.000000Z"
    assert a["annotations"]["description"] == "not verified"


def test_blocked_and_dry_run_decisions_become_events():
    inc = Incident("fp", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), {"alertname": "GpuXidCritical"}, id=7)
    plan = (PlannedAction("cordon_node", "n1", {"node": "n1"}),)
    (e,) = decision_events(inc, Decision("blocked", "r", plan, reason="budget", detail="3 > 2"))
    assert (e.kind, e.incident, e.action, e.result, e.target, e.detail) == ("blocked", 7, "cordon_node", "blocked",
                                                                            "n1", "budget: 3 > 2")
    (e,) = decision_events(inc, Decision("blocked", "r", reason="paused", detail="paused by x"))
    assert (e.kind, e.action, e.result) == ("blocked", "none", "blocked")
    (e,) = decision_events(inc, Decision("dry_run", "r", plan))
    assert (e.kind, e.result) == ("acted", "dry_run")
    assert decision_events(inc, Decision("act", "r", plan)) == []  # the action itself is notified when it ran
