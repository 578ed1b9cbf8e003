"""Config validation: every error names the file, the rule and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remediator.config import ConfigError, load_config, parse_config

EXAMPLE = Path("remediator/examples/vigil.yaml")


def rule(**over):
    r = {"name": "r1", "match": ['alertname="X"'], "actions": [{"type": "cordon_node",
                                                                "params": {"node": "{{ labels.node }}"}}]}
    r.update(over)
    return {"policy": {"rules": [r]}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"safety": {"dryrun": True}}, "safety: unknown key 'dryrun'"),
        ({"safety": {"budget": {"max_percent": 120}}}, "safety.budget: key 'max_percent': a percentage"),
        ({"safety": {"breaker": {"window": "5 minutes"}}}, "safety.breaker: key 'window'"),
        ({"server": {"listen": "nowhere"}}, "server: key 'listen'"),
        ({"server": {"threads": 0}}, "server: key 'threads': must be at least 1"),
        ({"server": {"threads": 10_000}}, "server: key 'threads': must be at most 256"),
        ({"server": {"threads": 2.5}}, "server: key 'threads': expected an integer"),
        ({"server": {"max_body_bytes": None}}, "server: key 'max_body_bytes': expected a number, got null"),
        ({"engine": {"workers": None}}, "engine: key 'workers': expected a number, got null"),
        (rule(match=["alertname~X"]), "rule 'r1': key 'match'"),
        (rule(match=['alertname=~"("']), "invalid RE2 regex"),
        (rule(actions=[{"type": "reboot_datacenter"}]), "rule 'r1': key 'actions[0]': unknown action type"),
        (rule(actions=[{"type": "cordon_node", "params": {}}]), "cordon_node needs 'node'"),
        (rule(actions=[{"type": "cordon_node", "params": {"node": "x", "nod": "y"}}]), "no parameter 'nod'"),
        (rule(actions=[{"type": "cordon_node", "params": {"node": "{{ labels.node "}}]), "template syntax error"),
        (rule(cooldown="soon"), "rule 'r1': key 'cooldown'"),
        (rule(max_actions=-1), "rule 'r1': key 'max_actions'"),
        ({"policy": {"rules": [{"match": ['a="b"']}]}}, "rule #1: key 'name': required"),
        ({"auth": {"bearer_token_file": "/nonexistent/token"}}, "auth: key 'bearer_token_file': cannot read"),
        ({"auth": {"bearer_token_env": "VIGIL_TEST_UNSET_VAR"}}, "VIGIL_TEST_UNSET_VAR is not set"),
        ({"ledger": {"backend": "etcd"}}, "ledger: key 'backend': one of sqlite, kubernetes"),
        ({"ledger": {"retention": "0s"}}, "ledger: key 'retention'"),
        ({"leader_election": {"lease_duration": "10s", "renew_deadline": "10s"}},
         "leader_election: key 'lease_duration': must be longer than renew_deadline"),
        ({"leader_election": {"renew_deadline": "2s", "retry_period": "2s"}},
         "leader_election: key 'renew_deadline': must be longer than 1.2 x retry_period"),
        ({"leader_election": {"retry_period": "500ms"}}, "leader_election: key 'retry_period': at least 1s"),
        ({"leader_election": {"lease": "15s"}}, "leader_election: unknown key 'lease'"),
        ({"leader_election": {"enabled": False}}, "leader election is required whenever Vigil acts"),
        ({"kubernetes": {"event_namespace": "vigil"}}, "accepts Events on nodes only in namespace 'default'"),
    ],
)
def test_errors_name_the_file_the_rule_and_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "vigil.yaml")
    assert str(err.value).startswith("vigil.yaml:") and message in str(err.value), str(err.value)


def test_server_threads():
    assert parse_config({}, "vigil.yaml").server_threads == 16
    assert parse_config({"server": {"threads": 4}}, "vigil.yaml").server_threads == 4


def test_leader_election_and_ledger_defaults():
    cfg = parse_config({})
    le = cfg.leader_election
    assert (le.enabled, le.lease_duration, le.renew_deadline, le.retry_period) == (True, 15.0, 10.0, 2.0)
    assert (cfg.ledger.backend, cfg.ledger.retention) == ("sqlite", 7 * 86400.0)
    dry = parse_config({"safety": {"dry_run": True}, "leader_election": {"enabled": False}})
    assert not dry.leader_election.enabled
    cfg = parse_config({"ledger": {"backend": "kubernetes", "namespace": "ops", "retention": "2d"}})
    assert (cfg.ledger.backend, cfg.ledger.namespace, cfg.ledger.retention) == ("kubernetes", "ops", 172800.0)


def test_secrets_come_from_files_or_environment(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("from-file\n")
    assert parse_config({"auth": {"bearer_token_file": str(token)}}).auth.bearer_token == "from-file"
    monkeypatch.setenv("VIGIL_T", "from-env")
    pw = tmp_path / "pw"
    pw.write_text("pw")
    cfg = parse_config({"auth": {"bearer_token_env": "VIGIL_T",
                                 "basic_auth": {"username": "am", "password_file": str(pw)}}})
    assert cfg.auth.bearer_token == "from-env" and cfg.auth.basic_password == "pw"


def test_the_example_config_is_valid(monkeypatch):
    for var in ("VIGIL_WEBHOOK_TOKEN", "VIGIL_ADMIN_TOKEN", "VIGIL_VIEWER_PASSWORD"):
        monkeypatch.setenv(var, f"{var}-value")
    cfg = load_config(EXAMPLE)
    assert [r.name for r in cfg.rules] == ["gpu-xid-ecc-reset", "gpu-xid-node-fatal", "gpu-lost", "gpu-reset",
                                          "gpu-drain-p2p-reset", "gpu-reboot-requested", "gpu-row-remap-failure",
                                          "nvswitch-sxid-fatal", "endpoint-down", "latency-burn-in-a-zone"]
    assert cfg.repair.replace_provider == "cluster-api" and cfg.repair.max_repairs == 3
    rules = {r.name: r for r in cfg.rules}
    assert [s.type for s in rules["endpoint-down"].escalate.steps] == ["rollout_restart", "rollback_deployment"]
    assert [a.type for a in rules["gpu-xid-node-fatal"].actions] == ["cordon_node", "drain_node", "reboot_node",
                                                                     "validate_node", "uncordon_node"]
    assert [a.type for a in rules["gpu-xid-node-fatal"].on_failure] == ["replace_node"]
    assert [s.type for s in rules["gpu-reset"].escalate.steps] == ["reboot_node"]
    assert rules["gpu-reset"].validate_on_resolved


def test_check_config_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(rule(actions=[{"type": "nuke"}])))
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "unknown action type 'nuke'" in r.stderr and "Traceback" not in r.stderr
    bad.write_text("policy: [unclosed")
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "not valid YAML" in r.stderr
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(EXAMPLE)], capture_output=True,
                       text=True, env={"VIGIL_WEBHOOK_TOKEN": "t", "PATH": "/usr/bin"})
    assert r.returncode == 0, r.stderr
    assert "ledger=sqlite" in r.stdout and "leader_election=lease <own namespace>/vigil-remediator 15/10/2s" in r.stdout
    bad.write_text(yaml.safe_dump({"leader_election": {"lease_duration": "5s"}}))
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "must be longer than renew_deadline" in r.stderr


def test_serve_refuses_to_start_without_credentials(tmp_path):
    cfg = tmp_path / "v.yaml"
    cfg.write_text(yaml.safe_dump({"safety": {"dry_run": True}, "ledger": {"path": str(tmp_path / "l.db")}}))
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg),
                        "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "refusing to start" in r.stderr


def test_unknown_cli_flag_is_exit_2():
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "serve", "--frobnicate"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "usage:" in r.stderr
