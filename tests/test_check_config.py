"""`check-config` of both components reads YAML strictly: a key given twice is an error naming both
lines (PyYAML alone keeps the last one silently; amtool refuses it), a syntax error is `file:line:col`,
and every mistake is reported at once, with exit status 2. Run as the commands are, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"remediator": "remediator.cli", "service-exporter": "exporters.service.cli"}

REMEDIATOR_DUPES = """\
safety:
  dry_run: true
  max_alert_age: 1h
  dry_run: false
policy:
  rules: []
"""
SERVICES_DUPES = """\
modules:
  health:
    prober: http
    timeout: 2s
    timeout: 3s
discovery:
- {namespace: inference, service: llm, port: http, module: health}
discovery: []
"""


def _check(component: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", COMMANDS[component], "check-config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.mark.parametrize(("component", "text", "expected"), [
    ("remediator", REMEDIATOR_DUPES, [":4: duplicate key 'dry_run' (first at line 2)"]),
    ("service-exporter", SERVICES_DUPES, [":5: duplicate key 'timeout' (first at line 4)",
                                          ":8: duplicate key 'discovery' (first at line 6)"]),
])
def test_a_key_given_twice_fails_with_both_lines(tmp_path, component, text, expected):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    r = _check(component, config)
    assert r.returncode == 2, r.stdout + r.stderr
    assert [line.removeprefix(f"error: {config}") for line in r.stderr.splitlines() if line.startswith("error:")
            ] == expected
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("component", sorted(COMMANDS))
def test_a_syntax_error_is_file_line_col(tmp_path, component):
    config = tmp_path / "config.yaml"
    config.write_text("modules:\n  a: [1, 2\n  b: 3\n")
    r = _check(component, config)
    assert r.returncode == 2
    assert f"error: {config}:3:4: not valid YAML: expected ',' or ']', but got ':'" in r.stderr, r.stderr


def test_the_service_exporter_reports_every_error_at_once(tmp_path):
    config = tmp_path / "services.yaml"
    config.write_text("""\
modules:
  health:
    prober: htp
    http: {valid_status_codes: [99]}
  ok: {prober: tcp}
targets:
- {name: a, url: ftp://x, module: nope}
- {name: a, url: "http://x:1", module: ok, labels: {pod: x}}
""")
    r = _check("service-exporter", config)
    assert r.returncode == 2
    errors = [line.removeprefix(f"error: {config}") for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        ":3: module 'health': key 'prober': one of http, inference, tcp, got 'htp' (at modules.health.prober)",
        ":4: module 'health'.http: key 'valid_status_codes': a list of HTTP status codes "
        "(at modules.health.http.valid_status_codes)",
        ":7: targets[0]: key 'url': expected http(s)://host:port or tcp://host:port, got 'ftp://x' (at targets[0].url)",
        ":7: targets[0]: key 'module': no module 'nope' (known: health, ok) (at targets[0].module)",
        ":8: targets[1]: key 'name': 'a' is used twice (at targets[1].name)",
        ":8: targets[1]: key 'labels': label 'pod' not allowed (allowed: namespace, service, zone) "
        "(at targets[1].labels)",
    ]
    assert r.stderr.rstrip().endswith(f"service-exporter: {config}: 6 errors")


@pytest.mark.parametrize("config", ["deploy/base/config/services.yaml", "deploy/compose/services.yaml",
                                    "exporters/service/examples/services.yaml"])
def test_the_shipped_service_configs_pass(config):
    r = _check("service-exporter", REPO / config)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{REPO / config}: ok (")


def test_serve_stops_at_a_duplicate_key_and_points_at_check_config(tmp_path):
    config = tmp_path / "services.yaml"
    config.write_text(SERVICES_DUPES)
    r = subprocess.run([sys.executable, "-m", COMMANDS["service-exporter"], "--config", str(config)],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2 and "duplicate key 'timeout' (first at line 4)" in r.stderr
    assert f"service-exporter check-config {config}" in r.stderr
