"""The pure parts of repairs: the repeat-offender count, the repair config, the Job's command."""

from __future__ import annotations

import datetime as dt

import pytest

from remediator.cluster.jobs import render_command
from remediator.cluster.silences import matchers
from remediator.config_repair import parse_repair
from remediator.domain.repair import RepairRecord, RepairSettings, exhausted
from vigil_common.config import ConfigError

NOW = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
S = RepairSettings(max_repairs=3, window=7 * 86400)


def rec(incident: int, *, node: str = "n1", uuid: str = "GPU-a", days_ago: float = 1, state: str = "succeeded",
        type_: str = "reboot_node") -> RepairRecord:
    return RepairRecord(incident, type_, node, uuid, NOW - dt.timedelta(days=days_ago), state)


@pytest.mark.parametrize(("records", "blocked"), [
    ([rec(1), rec(2)], False),                                            # two repairs: a third is fine
    ([rec(1), rec(2), rec(3)], True),                                     # three in 7 days: no more
    ([rec(1), rec(2), rec(3, days_ago=8)], False),                        # the oldest is out of the window
    ([rec(1), rec(1, type_="replace_node"), rec(2)], False),              # one incident's ladder counts once
    ([rec(1), rec(2), rec(3, state="blocked")], False),                   # blocked attempts changed nothing
    ([rec(1), rec(2), rec(3, type_="cordon_node")], False),               # only repairs count
    ([rec(1, node="a"), rec(2, node="b"), rec(3, node="c")], True),       # the same GPU moved between nodes
    ([rec(1, uuid="x"), rec(2, uuid="y"), rec(3, uuid="z")], True),       # the same node, other GPUs
    ([rec(1, node="a", uuid="x"), rec(2, node="b", uuid="y"), rec(3, node="c", uuid="z")], False),
])
def test_repeat_offenders(records, blocked):
    why = exhausted(records, node="n1", uuid="GPU-a", settings=S, now=NOW, incident_id=99)
    assert (why is not None) == blocked, why


def test_the_current_incidents_own_ladder_is_not_counted():
    records = [rec(1), rec(2), rec(99)]
    assert exhausted(records, node="n1", uuid="GPU-a", settings=S, now=NOW, incident_id=99) is None
    assert "repaired 3 times in 7 days (incidents 1, 2, 99)" in exhausted(records, node="n1", uuid="", settings=S,
                                                                          now=NOW)


def test_repair_config_defaults_and_errors(tmp_path):
    d = parse_repair(None, "v.yaml")
    assert d.reboot_provider == "job" and d.replace_provider == "" and d.max_repairs == 3
    assert d.reset_gpu.command == "nvidia-smi -pm 0 -i {{ uuid }} && nvidia-smi --gpu-reset -i {{ uuid }}"
    s = parse_repair({"reboot": {"provider": "medik8s", "medik8s": {"strategy": "OutOfServiceTaint"}},
                      "validate": {"job": None, "queries": ['up{node="{{ node }}"} == 1']},
                      "ttl_after_finished": "10m", "repeat_offenders": {"max_repairs": 5, "window": "1d"}}, "v.yaml")
    assert s.validate_job is None and s.ttl_after_finished == 600 and s.window == 86400
    for bad, msg in [({"reboot": {"provider": "ipmi"}}, "provider"), ({"replace": {"provider": "aws"}}, "provider"),
                     ({"reset_gpu": {"command": "{{ uuid"}}, "template"), ({"nope": 1}, "unknown key"),
                     ({"silences": {"matchers": []}}, "matchers"), ({"validate": {"queries": "x"}}, "queries")]:
        with pytest.raises(ConfigError, match=msg):
            parse_repair(bad, "v.yaml")


def test_the_command_gets_only_checked_and_quoted_values():
    assert render_command("nvidia-smi -r -i {{ uuid }}", node="n1", uuid="GPU-1a-2b") == "nvidia-smi -r -i GPU-1a-2b"
    for node, uuid in (("n1", "GPU-1;reboot"), ("n1", "$(id)"), ("N1 --x", ""), ("n1", "GPU-1 -x")):
        with pytest.raises(ValueError):
            render_command("x {{ uuid }}", node=node, uuid=uuid)


def test_silence_matchers():
    assert matchers(('node="{{ node }}"', 'alertname=~"Gpu.+"', 'severity!="info"'), node="n1", uuid="") == [
        {"name": "node", "value": "n1", "isRegex": False, "isEqual": True},
        {"name": "alertname", "value": "Gpu.+", "isRegex": True, "isEqual": True},
        {"name": "severity", "value": "info", "isRegex": False, "isEqual": False}]


def test_the_repeat_offender_rail_blocks_a_repair_step_and_says_why():
    from remediator.domain.decide import decide
    from remediator.domain.models import ClusterView, Incident, SafetyState
    from remediator.domain.policy import Action, Matcher, Rule
    from remediator.domain.safety import Safety

    rule = Rule("reboot", (Matcher.parse('alertname="X"'),), (Action("cordon_node", {"node": "n1"}),
                                                              Action("reboot_node", {"node": "n1"})))
    incident = Incident("fp", NOW - dt.timedelta(seconds=5), {"alertname": "X", "node": "n1", "uuid": "GPU-a"}, id=99)
    args = (incident, [rule], [], ClusterView(available=False), Safety(), SafetyState(), NOW)
    d = decide(*args, repairs=[rec(1), rec(2), rec(3)], repair=S)
    assert d.outcome == "blocked" and d.reason == "repair_exhausted" and "repaired 3 times" in d.detail
    assert any(line.startswith("repeat_offenders: blocked (repair_exhausted)") for line in d.trace)
    d = decide(*args, repairs=[rec(1), rec(2)], repair=S)
    assert d.outcome == "act" and "repeat_offenders: ok: under 3 repairs of this node and GPU in 7 days" in d.trace


def _explain(tmp_path, **labels: str) -> str:
    """`remediator explain` of one firing alert against the example policy."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    payload = tmp_path / "alert.json"
    payload.write_text(json.dumps({"version": "4", "status": "firing", "receiver": "vigil-remediator",
                                   "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
                                   "externalURL": "", "groupKey": "x", "truncatedAlerts": 0, "alerts": [{
                                       "status": "firing", "labels": labels, "annotations": {},
                                       "startsAt": dt.datetime.now(dt.UTC).isoformat(), "endsAt": "",
                                       "generatorURL": "", "fingerprint": "abc"}]}))
    example = Path(__file__).resolve().parents[2] / "remediator/examples/vigil.yaml"
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "explain", "--config", str(example), str(payload)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60,
                       env={**os.environ, "VIGIL_WEBHOOK_TOKEN": "t",
                            "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert r.returncode == 0, r.stderr
    return r.stdout


XID = {"alertname": "GpuXidCritical", "node": "gpu-node-1", "gpu": "3", "uuid": "GPU-abc", "severity": "critical",
       "remediation": "auto"}


def test_explain_prints_every_rail_for_each_step_of_the_xid_ladder(tmp_path):
    out = _explain(tmp_path, **XID, xid="79")
    assert "first: cordon_node(gpu-node-1), drain_node(gpu-node-1), reboot_node(gpu-node-1), " \
           "validate_node(gpu-node-1), uncordon_node(gpu-node-1)" in out
    assert "on_failure: replace_node(gpu-node-1)" in out
    for rail in ("paused", "stale", "target", "ownership", "cooldown", "repeat_offenders", "breaker", "budgets"):
        assert out.count(f"{rail}: ok") == 2, rail  # the first step and the on_failure step


# ---- the example policy: a rule for every critical GPU alert --------------------------------------

def _example_rules():
    from pathlib import Path

    import yaml

    from remediator.config import parse_config

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "remediator/examples/vigil.yaml").read_text())
    config = parse_config({k: data[k] for k in ("policy", "repair", "prometheus", "topology") if k in data},
                          "vigil.yaml")
    return config.rules + config.domain_rules  # a degraded domain is decided with the domain rules


def _critical_gpu_alerts() -> dict[str, dict[str, str]]:
    """Each critical alert of the GPU health group, with the labels its firing promtool case expects."""
    from alerts import testcases

    cases = [c for c in testcases.cases()["gpu.yml"] if c.expect]
    out = {}
    for c in cases:
        for labels, _ in c.expect:
            if labels["severity"] == "critical" and not c.alert.startswith("GpuExporter"):
                out.setdefault(c.alert, {"alertname": c.alert, **labels})
    return out


@pytest.mark.parametrize(("alert", "extra", "rule", "first"), [
    ("GpuXidCritical", {"xid": "79"}, "gpu-xid-node-fatal",
     ["cordon_node", "drain_node", "reboot_node", "validate_node", "uncordon_node"]),
    ("GpuXidCritical", {"xid": "119"}, "gpu-xid-node-fatal",
     ["cordon_node", "drain_node", "reboot_node", "validate_node", "uncordon_node"]),
    ("GpuXidCritical", {"xid": "48"}, "gpu-xid-ecc-reset", ["drain_node", "reset_gpu"]),
    ("GpuXidCritical", {"xid": "95"}, "gpu-xid-ecc-reset", ["drain_node", "reset_gpu"]),
    ("GpuLost", {}, "gpu-lost",
     ["cordon_node", "taint_node", "drain_node", "reboot_node", "validate_node", "uncordon_node"]),
    ("GpuEccUncorrectable", {}, "gpu-reset", ["drain_node", "reset_gpu"]),
    ("GpuRecoveryActionRequired", {"recovery_action": "1"}, "gpu-reset", ["drain_node", "reset_gpu"]),
    ("GpuRecoveryActionRequired", {"recovery_action": "2"}, "gpu-reboot-requested",
     ["cordon_node", "drain_node", "reboot_node", "validate_node", "uncordon_node"]),
    ("GpuRecoveryActionRequired", {"recovery_action": "3"}, "gpu-drain-p2p-reset", ["drain_node", "reset_gpu"]),
    ("GpuRecoveryActionRequired", {"recovery_action": "4"}, "gpu-reset", ["drain_node", "reset_gpu"]),
    ("GpuRowRemapFailure", {}, "gpu-row-remap-failure", ["cordon_node", "drain_node", "replace_node"]),
    ("GpuNvswitchSxidFatal", {}, "nvswitch-sxid-fatal",
     ["cordon_node", "drain_node", "reboot_node", "validate_node", "uncordon_node"]),
])
def test_the_example_policy_has_a_ladder_for_each_actionable_gpu_fault(alert, extra, rule, first):
    from remediator.domain.decide import match

    labels = {**_critical_gpu_alerts()[alert], **extra}
    matched, trace = match(_example_rules(), labels)
    assert matched is not None and matched.name == rule, trace
    assert [a.type for a in matched.actions] == first


def test_every_critical_gpu_alert_is_matched_by_a_rule_of_the_example_policy():
    from remediator.domain.decide import match

    alerts = _critical_gpu_alerts()
    assert set(alerts) >= {"GpuXidCritical", "GpuLost", "GpuEccUncorrectable", "GpuRowRemapFailure",
                           "GpuRecoveryActionRequired", "GpuNvswitchSxidFatal"}
    for name, labels in alerts.items():
        assert labels.get("remediation") == "auto", name
        assert match(_example_rules(), labels)[0] is not None, name


@pytest.mark.parametrize("rule", ["gpu-xid-ecc-reset", "gpu-drain-p2p-reset"])
def test_gpu_scoped_resets_drain_only_the_gpu_and_reboot_only_when_not_verified(rule):
    r = {x.name: x for x in _example_rules()}[rule]
    context = {"labels": {"node": "n1", "gpu": "3", "uuid": "GPU-a"}}
    drain, reset = (a.render(context) for a in r.actions)
    assert drain["scope"] == "gpu" and drain["uuid"] == "GPU-a" and reset["uuid"] == "GPU-a"
    assert 'gpu_accessible{uuid="GPU-a"}' in r.verify.render(context)
    assert [s.type for s in r.escalate.steps] == ["reboot_node"] and r.escalate.max_steps == 1
    assert r.validate_on_resolved


def test_explain_plans_a_gpu_reset_for_xid_48_and_a_reboot_only_as_its_escalation(tmp_path):
    out = _explain(tmp_path, **XID, xid="48")
    assert "rule 'gpu-xid-ecc-reset' matches" in out
    assert "first: drain_node(gpu-node-1), reset_gpu(gpu-node-1)" in out
    assert "escalation: reboot_node(gpu-node-1)" in out and out.count("reboot_node") == 1
