"""Adversarial: numbers YAML allows (.nan, .inf, 1e300) in vigil.yaml. Each either takes a rail
away (NaN compares false: `age > nan` never blocks, so the stale rail and the traffic budget let
everything through) or makes every engine tick raise (`now - timedelta(seconds=inf)` in the history
window): check-config and `serve` must reject them with a message naming the key, never pass them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from remediator.config import parse_config
from remediator.config_check import check
from vigil_common.config import ConfigError

RULE = {"name": "r", "match": ['alertname="A"'],
        "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}


def _config(yaml_fragment: str) -> str:
    return f"""auth: {{bearer_token_env: VIGIL_ADV_TOKEN}}
{yaml_fragment}
"""


POLICY = """policy:
  rules:
    - name: r
      match: ['alertname="A"']
      actions: [{type: cordon_node, params: {node: "{{ labels.node }}"}}]
"""

CASES = {
    "max_alert_age NaN (stale rail never blocks)": "safety: {max_alert_age: .nan}\n" + POLICY,
    "max_traffic_shift_percent NaN (traffic budget never blocks)":
        "safety: {budget: {max_traffic_shift_percent: .nan}}\n" + POLICY,
    "max_percent NaN": "safety: {budget: {max_percent: .nan}}\n" + POLICY,
    "pool max_percent NaN": "safety: {budget: {pools: {label: p, default: {max_percent: .nan}}}}\n" + POLICY,
    "breaker window .inf (every tick raises)": "safety: {breaker: {window: .inf}}\n" + POLICY,
    "breaker window 1e300 (every tick raises)": "safety: {breaker: {window: 1.0e+300}}\n" + POLICY,
    "budget window NaN": "safety: {budget: {window: .nan}}\n" + POLICY,
    "rule cooldown .inf": POLICY.replace("      actions:", "      cooldown: .inf\n      actions:"),
    "rule min_available nan%": POLICY.replace("      actions:", "      min_available: nan%\n      actions:"),
    "rule min_available inf%": POLICY.replace("      actions:", "      min_available: 'inf%'\n      actions:"),
    "prometheus timeout NaN": "prometheus: {url: 'http://127.0.0.1:9', timeout: .nan}\n" + POLICY,
    # a zero timeout is a ValueError in urllib3 on every request: Vigil would never reach either
    "kubernetes request_timeout 0": "kubernetes: {request_timeout: 0}\n" + POLICY,
    "prometheus timeout 0": "prometheus: {url: 'http://127.0.0.1:9', timeout: 0s}\n" + POLICY,
    # a zero poll interval re-asked Prometheus in a tight loop until the deadline, per verification
    "verify interval 0": POLICY.replace("      actions:", "      verify: {alert_resolved: true, interval: 0s}\n"
                                                           "      actions:"),
}


@pytest.mark.parametrize("fragment", CASES.values(), ids=CASES.keys())
def test_check_config_rejects_non_finite_numbers(tmp_path, fragment):
    path = tmp_path / "vigil.yaml"
    path.write_text(_config(fragment))
    report = check(str(path))
    assert not report.ok, f"accepted: {fragment!r}"
    assert all("checking stopped early" not in p.message for p in report.errors), report.errors


@pytest.mark.parametrize("fragment", CASES.values(), ids=CASES.keys())
def test_parse_config_raises_a_config_error(monkeypatch, fragment):
    import yaml

    monkeypatch.setenv("VIGIL_ADV_TOKEN", "adv-token-0123456789")
    with pytest.raises(ConfigError, match=r"nan|inf|range|finite|percent|positive"):
        parse_config(yaml.safe_load(_config(fragment)), "adv.yaml")


def test_the_cli_exits_2_with_the_key(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text(_config("safety: {max_alert_age: .nan}\n" + POLICY))
    out = subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out
    assert "max_alert_age" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_large_finite_values_inside_the_range_still_load():
    config = parse_config({"safety": {"dry_run": True, "max_alert_age": "292y", "breaker": {"window": 86400.5},
                                      "budget": {"max_percent": 12.5}}, "policy": {"rules": [RULE]}}, "adv.yaml")
    assert config.safety.max_alert_age > 9e9
    assert config.safety.breaker.window == 86400.5
