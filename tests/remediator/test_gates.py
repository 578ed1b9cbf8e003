"""Approvals and maintenance windows as rails, with a frozen clock: the gated action of a chain
waits at its turn while the actions before it run, a window lets a step start only while open
(a step admitted before the close is not stopped; nothing new starts after), an approval lasts
approval_ttl, a denial hands the incident over; check-config names every bad window. Pure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys

import pytest

from remediator.config import ConfigError, parse_config
from remediator.domain import rails
from remediator.domain.approvals import Approval
from remediator.domain.decide import decide, plan_step, recheck
from remediator.domain.models import ClusterView, Incident, NodeView, PlannedAction, SafetyState
from remediator.domain.windows import Window, WindowError

RULES = {
    "maintenance_windows": {"nightly": {"schedule": "0 22 * * *", "duration": "6h", "time_zone": "Europe/Berlin"}},
    "approval_ttl": "1h",
    "rules": [
        {"name": "xid", "match": ['alertname="Xid"'],
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
                     {"type": "drain_node", "params": {"node": "{{ labels.node }}"}},
                     {"type": "taint_node", "params": {"node": "{{ labels.node }}"}, "approval": "required",
                      "window": "nightly"}]},
        {"name": "night-only", "match": ['alertname="Lost"'], "maintenance_window": "nightly",
         "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}},
                     {"type": "drain_node", "params": {"node": "{{ labels.node }}"}}]},
    ]}
CONFIG = parse_config({"policy": RULES})
XID, NIGHT = CONFIG.rules
DAY = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)  # 13:00 in Berlin: the window is closed
NIGHT_OPEN = dt.datetime(2026, 12, 7, 21, 0, tzinfo=dt.UTC)  # 22:00 in Berlin: it opens
CLUSTER = ClusterView({f"n{i}": NodeView(f"n{i}", gpus=8) for i in range(6)})
TAINT = PlannedAction("taint_node", "n1", {"node": "n1"})


def incident(alertname="Xid", at=DAY) -> Incident:
    return Incident("f", at - dt.timedelta(seconds=30), {"alertname": alertname, "node": "n1"}, id=7)


def world(now, approvals=None) -> rails.World:
    return rails.World(CLUSTER, [], CONFIG.safety, SafetyState(), now, approvals=approvals or {})


def admit(rule, action, now, approvals=None, alertname="Xid"):
    """The admission right before `action` runs, as the engine asks it (every rail, one action)."""
    return recheck(rails.Step("first", incident(alertname, now), rule, (action,)), world(now, approvals))


def test_the_chain_starts_at_once_and_only_the_gated_action_waits_at_its_turn():
    d = decide(incident(), CONFIG.rules, [], CLUSTER, CONFIG.safety, SafetyState(), DAY)
    assert d.outcome == "act" and [a.type for a in d.actions] == ["cordon_node", "drain_node", "taint_node"]
    assert admit(XID, PlannedAction("cordon_node", "n1", {"node": "n1"}), DAY) is None  # cordon now
    held = admit(XID, TAINT, DAY)
    assert held.outcome == "wait" and held.reason == "window" and held.step == "taint_node(n1)"
    assert "window nightly opens at 2026-12-07T21:00:00+00:00" in held.detail
    assert held.not_before == NIGHT_OPEN  # decided again when the window opens


def test_inside_the_window_the_step_waits_for_approval_then_runs_once_approved():
    held = admit(XID, TAINT, NIGHT_OPEN)
    assert (held.outcome, held.reason, held.step) == ("wait", "approval", "taint_node(n1)")
    assert "remediator approve 7" in held.detail
    ok = {7: {"taint_node(n1)": Approval("approved", NIGHT_OPEN, by="alice@127.0.0.1", reason="checked")}}
    assert admit(XID, TAINT, NIGHT_OPEN + dt.timedelta(minutes=5), ok) is None


def test_an_approval_expires_after_approval_ttl():
    ok = {7: {"taint_node(n1)": Approval("approved", NIGHT_OPEN, by="alice", reason="checked")}}
    later = NIGHT_OPEN + dt.timedelta(hours=1, seconds=1)
    held = admit(XID, TAINT, later, ok)
    assert held.reason == "approval" and "expired" in held.detail


def test_an_approved_step_held_by_another_rail_waits_again_without_a_second_approval():
    ok = {7: {"taint_node(n1)": Approval("approved", NIGHT_OPEN, by="alice", reason="checked")}}
    w = dataclasses.replace(world(NIGHT_OPEN, ok), state=SafetyState(paused=True))
    held = recheck(rails.Step("first", incident(at=NIGHT_OPEN), XID, (TAINT,)), w)
    assert held.reason == "paused"
    assert admit(XID, TAINT, NIGHT_OPEN + dt.timedelta(minutes=30), ok) is None  # resumed: no new approval


def test_a_denial_hands_the_incident_over_and_nothing_more_runs():
    no = {7: {"taint_node(n1)": Approval("denied", DAY, by="bob", reason="not on a Friday")}}
    d = decide(incident(), CONFIG.rules, [], CLUSTER, CONFIG.safety, SafetyState(), DAY, approvals=no)
    assert (d.outcome, d.reason) == ("handed_over", "denied") and not d.actions
    assert "denied by bob (not on a Friday)" in d.detail and "handed over" in d.trace[-1]


def test_a_rule_window_gates_every_action_of_the_rule_at_its_admission():
    d = decide(incident("Lost"), CONFIG.rules, [], CLUSTER, CONFIG.safety, SafetyState(), DAY)
    assert (d.outcome, d.reason) == ("wait", "window") and d.not_before == NIGHT_OPEN
    inside = NIGHT_OPEN + dt.timedelta(hours=5, minutes=59)
    drain = PlannedAction("drain_node", "n1", {"node": "n1"})
    assert admit(NIGHT, PlannedAction("cordon_node", "n1", {"node": "n1"}), inside, alertname="Lost") is None
    after = NIGHT_OPEN + dt.timedelta(hours=6)  # the close: the drain admitted before it was not stopped, but
    held = admit(NIGHT, drain, after, alertname="Lost")  # a step not yet started does not start
    assert held.reason == "window" and held.not_before == NIGHT_OPEN + dt.timedelta(days=1)


def test_later_steps_and_undo_are_not_gated():
    step = rails.Step("uncordon", incident(), XID, (PlannedAction("uncordon_node", "n1", {"node": "n1"}),))
    assert plan_step(step, world(DAY)).outcome == "act"


@pytest.mark.parametrize(("now", "is_open"), [
    (dt.datetime(2026, 3, 28, 20, 59, tzinfo=dt.UTC), False),  # winter time: 21:59 in Berlin
    (dt.datetime(2026, 3, 28, 21, 0, tzinfo=dt.UTC), True),  # 22:00 CET
    (dt.datetime(2026, 3, 29, 2, 59, tzinfo=dt.UTC), True),  # 04:59 CEST: the clocks moved on at 02:00
    (dt.datetime(2026, 3, 29, 3, 0, tzinfo=dt.UTC), False),  # six hours after it opened
    (dt.datetime(2026, 3, 29, 20, 0, tzinfo=dt.UTC), True),  # 22:00 CEST opens an hour earlier in UTC
])
def test_a_window_is_read_in_its_time_zone_across_daylight_saving(now, is_open):
    assert CONFIG.safety.windows["nightly"].state(now).open is is_open


@pytest.mark.parametrize(("spec", "message"), [
    ({"schedule": "0 25 * * *", "duration": "1h"}, "not a 5-field cron expression"),
    ({"schedule": "0 22 * *", "duration": "1h"}, "not a 5-field cron expression"),
    ({"schedule": "0 22 * * *", "duration": "1h", "time_zone": "Europe/Atlantis"}, "not an IANA time zone"),
    ({"schedule": "0 22 * * *"}, "duration"),
    ({"schedule": "0 22 * * *", "duration": "1.5h"}, "duration"),
])
def test_check_config_rejects_bad_schedules_and_time_zones(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"policy": {"maintenance_windows": {"w": spec}, "rules": []}})


def test_window_parse_errors_are_window_errors():
    with pytest.raises(WindowError):
        Window.parse("w", "not cron", 60)


def test_check_config_reports_unknown_windows_and_gates_on_later_steps_at_their_lines(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text("""\
auth: {bearer_token_env: T}
policy:
  maintenance_windows:
    nightly: {schedule: "0 22 * * *", duration: 6h}
  rules:
    - name: r
      match: ['alertname="X"']
      maintenance_window: weekly
      actions:
        - {type: cordon_node, params: {node: n}, window: nightly}
        - {type: drain_node, params: {node: n}, window: monthly, approval: maybe}
      on_failure:
        steps:
          - {type: replace_node, params: {node: n}, approval: required}
""")
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    text = r.stderr
    assert f"{path}:8: " in text and "no window 'weekly'" in text
    assert f"{path}:11: " in text and "no window 'monthly'" in text
    assert "approval': required or auto, got 'maybe'" in text
    assert f"{path}:14: " in text and "an on_failure step cannot wait" in text


def test_a_denial_is_notified_as_denied_not_as_a_stalled_wait():
    from remediator.runtime.notify import decision_events

    no = {7: {"taint_node(n1)": Approval("denied", DAY, by="bob", reason="not on a Friday")}}
    d = decide(incident(), CONFIG.rules, [], CLUSTER, CONFIG.safety, SafetyState(), DAY, approvals=no)
    [e] = decision_events(incident(), d)
    assert (e.alertname, e.result, e.action, e.target) == ("VigilRemediation", "denied", "taint_node", "n1")
    assert "denied by bob" in e.detail


def test_the_trace_says_which_later_action_will_wait_at_its_turn():
    d = decide(incident(), CONFIG.rules, [], CLUSTER, CONFIG.safety, SafetyState(), DAY)
    assert "window: ok: no maintenance window; at its turn, taint_node(n1) waits for its window" in d.trace
    assert "approval: ok: no approval required; at its turn, taint_node(n1) waits for its approval" in d.trace


def test_dry_run_asks_nobody_and_says_what_would_wait():
    d = decide(incident("Lost"), CONFIG.rules, [], CLUSTER, CONFIG.safety, SafetyState(), DAY, dry_run=True)
    assert d.outcome == "dry_run"
    assert any(t.startswith("window: ok: dry-run: cordon_node(n1) would wait for window nightly") for t in d.trace)
    w = dataclasses.replace(world(NIGHT_OPEN), dry_run=True)
    assert plan_step(rails.Step("first", incident(at=NIGHT_OPEN), XID, (TAINT,)), w).outcome == "dry_run"


def test_an_escalation_step_can_wait_for_approval_and_a_window():
    from remediator.domain.decide import plan_escalation

    cfg = parse_config({"policy": {**RULES, "rules": [{
        "name": "esc", "match": ['alertname="Xid"'], "verify": {"alert_resolved": True},
        "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
        "escalate": {"steps": [{"type": "drain_node", "params": {"node": "{{ labels.node }}"}, "approval": "required",
                                "window": "nightly"}]}}]}})
    [rule] = cfg.rules
    held = plan_escalation(incident(), rule, 0, world(DAY))
    assert (held.outcome, held.reason, held.step) == ("wait", "window", "drain_node(n1)")
    held = plan_escalation(incident(at=NIGHT_OPEN), rule, 0, world(NIGHT_OPEN))
    assert (held.outcome, held.reason, held.step) == ("wait", "approval", "drain_node(n1)")
    ok = {7: {"drain_node(n1)": Approval("approved", NIGHT_OPEN, by="alice", reason="checked")}}
    assert plan_escalation(incident(at=NIGHT_OPEN), rule, 0, world(NIGHT_OPEN, ok)).outcome == "act"
