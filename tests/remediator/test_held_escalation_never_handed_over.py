"""Adversarial: an escalation step held by a rail that can clear waits forever: no max_wait, no
hand-over, no notification, however long the hold lasts.

A first action that waits longer than `engine.max_wait` is handed over (`Engine._wait_or_hand_over`).
An escalation step held back (`Followup._escalate` -> "waits") is kept in `Engine._escalations` and
the ledger state `escalations_waiting` and tried again every reconcile interval
(`Engine._verify_and_escalate`, `_retry_escalations`) with no deadline at all. A pause forgotten over
a weekend, or a budget a stuck node never frees, keeps a faulty, unverified node in this state
indefinitely: its incident says `succeeded`, the queue (`GET /api/queue`, which lists status
`waiting` incidents only) does not show it, and nobody is told. Real Engine (no cluster), SQLite."""

from __future__ import annotations

import datetime as dt

from remediator.config import parse_config
from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import Alert
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
NODE = {"node": "{{ labels.node }}"}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def test_an_escalation_held_past_max_wait_is_handed_over(tmp_path):
    config = parse_config({"engine": {"max_wait": "1h"}, "safety": {"dry_run": False},
                           "policy": {"rules": [{
                               "name": "xid", "match": ['alertname="GpuXidCritical"'],
                               "actions": [{"type": "cordon_node", "params": NODE}],
                               "verify": {"alert_resolved": True, "deadline": "1s", "interval": "1s"},
                               "escalate": {"steps": [{"type": "reboot_node", "params": NODE}]}}]}}, "adv.yaml")
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    clock = Clock()
    engine = Engine(config, ledger, None, Metrics(), clock=clock)
    ledger.record([Alert("firing", {"alertname": "GpuXidCritical", "node": "n1", "severity": "critical"}, {},
                         T0 - dt.timedelta(minutes=1), dt.datetime(1, 1, 1, tzinfo=dt.UTC), "a" * 16)], T0)
    [inc] = ledger.due(T0)
    [aid] = ledger.save_decision(inc.id, Decision("act", "xid", (PlannedAction("cordon_node", "n1", {"node": "n1"}),)),
                                 T0)
    ledger.claim_action(aid, T0)
    ledger.finish_action(aid, "succeeded", {"detail": "cordoned"}, T0)
    engine.set_paused(True, T0, by="on-call", reason="maintenance")  # forgotten for the weekend
    engine._verify_and_escalate(inc.id)  # the alert still fires: escalate -> reboot held by the pause
    assert inc.id in engine._escalations, "the held escalation is kept for a retry"
    for hours in range(1, 73):  # three days of reconcile passes
        clock.now = T0 + dt.timedelta(hours=hours)
        engine._verify_and_escalate(inc.id)
    full = ledger.get_incident(inc.id)
    events = [a["event"] for a in full["audit"]]
    handed = full["status"] == "handed_over" or any("hand" in e for e in events)
    assert handed or inc.id not in engine._escalations, (
        f"72 h after max_wait (1 h) the escalation still waits silently: status {full['status']!r}, "
        f"still in escalations_waiting: {inc.id in engine._escalations}, queue: {engine.queue()}")


def test_a_held_escalation_does_not_grow_the_audit_trail_every_pass(tmp_path):
    """Each retry of a held escalation re-runs the verification and `Followup._verify` writes
    `set_verification` -> an audit row `verify:not_verified` every reconcile pass (30 s by default):
    2,880 rows a day per held incident, for as long as the hold lasts (unbounded, see above)."""
    config = parse_config({"safety": {"dry_run": False},
                           "policy": {"rules": [{
                               "name": "xid", "match": ['alertname="GpuXidCritical"'],
                               "actions": [{"type": "cordon_node", "params": NODE}],
                               "verify": {"alert_resolved": True, "deadline": "1s", "interval": "1s"},
                               "escalate": {"steps": [{"type": "reboot_node", "params": NODE}]}}]}}, "adv.yaml")
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    clock = Clock()
    engine = Engine(config, ledger, None, Metrics(), clock=clock)
    ledger.record([Alert("firing", {"alertname": "GpuXidCritical", "node": "n1", "severity": "critical"}, {},
                         T0 - dt.timedelta(minutes=1), dt.datetime(1, 1, 1, tzinfo=dt.UTC), "a" * 16)], T0)
    [inc] = ledger.due(T0)
    [aid] = ledger.save_decision(inc.id, Decision("act", "xid", (PlannedAction("cordon_node", "n1", {"node": "n1"}),)),
                                 T0)
    ledger.claim_action(aid, T0)
    ledger.finish_action(aid, "succeeded", {"detail": "cordoned"}, T0)
    engine.set_paused(True, T0, by="on-call", reason="maintenance")
    engine._verify_and_escalate(inc.id)
    before = len(ledger.get_incident(inc.id)["audit"])
    for passes in range(1, 121):  # one hour of 30 s reconcile passes, the pause still on
        clock.now = T0 + dt.timedelta(seconds=30 * passes)
        engine._verify_and_escalate(inc.id)
    grown = len(ledger.get_incident(inc.id)["audit"]) - before
    assert grown <= 2, f"{grown} audit rows in one hour of passes for one held escalation (nothing changed)"
