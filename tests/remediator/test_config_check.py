"""check-config as the ecosystem's tools do it: every error at once with file, line and YAML path;
matchers exactly as Alertmanager parses them (amtool check-config agrees over a corpus) and
durations exactly as Prometheus does (promtool check rules agrees over a corpus)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remediator.domain.matchers import MatcherError, parse_matchers
from tests.stack import tool
from vigil_common.durations import parse_duration

EXAMPLE = Path("remediator/examples/vigil.yaml")

# (matcher as written in a `matchers:` / `match:` list entry, Alertmanager accepts it)
MATCHERS = [
    ('alertname="GpuXidCritical"', True), ("alertname=GpuXidCritical", True), ('node!=""', True),
    ('a=~"x|y"', True), ('a!~".*foo.*"', True), ('foo:bar="1"', True), (r'a="with \"quotes\""', True),
    (r'a=~"\d+"', True), ('{a="1", b="2"}', True), ('a="b,c"', True), ('a=~"(?i)gpu.*"', True),
    ('a=~"[[:alpha:]]+"', True), (r'a=~"\pL+"', True), ('a=~"(?P<x>y)"', True), ('a=~"a{2,5}"', True),
    ('a = "spaced"', True), (r'a=~"\Qa.b\E"', True), (r'a=~"x\z"', True), ('a=', True), ('a=""', True),
    (r'a="new\nline"', True), ("a=~(a|b)", True), ('a=~"x{1000}"', True), (r'a=~"\x41"', True),
    (r'a=~"\012"', True), ('a=~"[^\\n]*"', True), ("a=x}", True),
    ('alertname=GpuXid"Critical', False), ('a=~"(?!Gpu).*"', False), (r'a=~"(a)\1"', False), ('a=~"a++"', False),
    ('a=~"(?<=x)y"', False), ('a~"x"', False), ('1a="x"', False), ("a=b,c", False), ('a=~"("', False),
    (r'a=~"\C"', False), ('a=~"(?<n>x)"', False), ('a=~"x{1001}"', False), (r'a=~"\Z"', False),
    ('a="unterminated', False), ('a-b="x"', False), ('a=~"[z-a]"', False), ('a=~"*"', False), ('="x"', False),
    (r'a="x\"', False), ('a=~"(?x)a b"', False), (r'a=~"\1"', False), ('a=~"a{,5}x{"', True), ("", True),
]

# (duration, Prometheus accepts it)
DURATIONS = [
    ("0", True), ("0s", True), ("5m", True), ("1h30m", True), ("90s", True), ("1d", True), ("1w", True),
    ("1y", True), ("10ms", True), ("1h0m", True), ("2d3h4m5s6ms", True), ("01m", True), ("100000h", True),
    ("1.5h", False), ("5m1h", False), ("5", False), ("1m1m", False), ("1H", False), ("5 m", False),
    ("-5m", False), ("1h 30m", False), ("1mo", False), ("+5m", False), ("30sec", False), ("1s1h", False),
    ("ms", False), ("1ms1s", False), ("1.0s", False), ("1e3s", False), ("0.5", False), ("1d1w", False),
]


def _vigil_accepts_matcher(text: str) -> bool:
    try:
        parse_matchers(text)
    except MatcherError:
        return False
    return True


def _amtool_accepts(entries: list[str], tmp_path: Path) -> list[bool]:
    amtool = tool("amtool")
    out = []
    for i, m in enumerate(entries):
        cfg = {"route": {"receiver": "r", "routes": [{"receiver": "r", "matchers": [m]}]},
               "receivers": [{"name": "r"}]}
        path = tmp_path / f"am-{i}.yml"
        path.write_text(yaml.safe_dump(cfg))
        r = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30)
        out.append(r.returncode == 0)
    return out


def test_matchers_agree_with_amtool(tmp_path):
    entries = [m for m, _ in MATCHERS]
    am = _amtool_accepts(entries, tmp_path)
    rows = [(m, expected, got_am, _vigil_accepts_matcher(m)) for (m, expected), got_am in zip(MATCHERS, am,
                                                                                              strict=True)]
    disagree = [(m, f"amtool={a}", f"vigil={v}") for m, _, a, v in rows if a != v]
    assert not disagree, disagree
    wrong = [(m, e, a) for m, e, a, _ in rows if e != a]
    assert not wrong, f"the corpus' expectations are wrong (amtool disagrees): {wrong}"
    assert sum(e for _, e in MATCHERS) >= 20 and sum(not e for _, e in MATCHERS) >= 20


def test_durations_agree_with_promtool(tmp_path):
    promtool = tool("promtool")
    disagree = []
    for i, (d, expected) in enumerate(DURATIONS):
        path = tmp_path / f"rules-{i}.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
            {"alert": "A", "expr": "vector(1)", "for": d}]}]}))
        r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
        prom = r.returncode == 0
        try:
            parse_duration(d)
            vigil = True
        except ValueError:
            vigil = False
        if prom != vigil or prom != expected:
            disagree.append((d, f"promtool={prom}", f"vigil={vigil}", f"expected={expected}"))
    assert not disagree, disagree


def test_regex_matching_is_re2s():
    (m,) = parse_matchers(r'gpu=~"\d"')
    assert m.regex.search("7") and not m.regex.search("\u0667")  # Arabic-Indic seven: \d is ASCII in RE2 and Go
    (m,) = parse_matchers('a=~"x.y"')
    assert m.regex.search("x-y") and not m.regex.search("x\ny") and not m.regex.search("ax-y")  # anchored


def _check(path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(path), *args],
                          capture_output=True, text=True, env={**base, **(env or {})}, timeout=60)


def test_the_example_passes_with_no_environment_and_says_the_secret_was_not_checked():
    r = _check(EXAMPLE)
    assert r.returncode == 0, r.stderr
    rules = len(yaml.safe_load(EXAMPLE.read_text())["policy"]["rules"])
    assert f"ok ({rules} rules" in r.stdout and "secrets not checked" in r.stdout
    assert "note:" in r.stderr and "VIGIL_WEBHOOK_TOKEN is not set" in r.stderr and "error:" not in r.stderr
    r = _check(EXAMPLE, "--check-secrets")
    assert r.returncode == 2 and "error:" in r.stderr and "VIGIL_WEBHOOK_TOKEN is not set" in r.stderr
    assert "vigil.yaml:17:" in r.stderr and "(at auth.credentials[0].bearer_token_env)" in r.stderr
    assert "VIGIL_ADMIN_TOKEN" in r.stderr and "VIGIL_VIEWER_PASSWORD" in r.stderr
    r = _check(EXAMPLE, "--check-secrets", env={"VIGIL_WEBHOOK_TOKEN": "t", "VIGIL_ADMIN_TOKEN": "a",
                                                 "VIGIL_VIEWER_PASSWORD": "p"})
    assert r.returncode == 0 and "secrets checked" in r.stdout and "note:" not in r.stderr


THREE_MISTAKES = """\
auth:
  bearer_token_env: VIGIL_WEBHOOK_TOKEN
safety:
  breaker:
    window: 1.5h
policy:
  rules:
  - name: r1
    match: ['alertname=GpuXid"Critical']
    actions:
    - type: cordon_node
      params: {node: "{{ labels.node }}"}
  - name: r2
    match: ['alertname="X"']
    actions:
    - type: cordon_node
      params: {node: "{{ labels.node }}"}
    cooldown: 5m1h
"""


def test_a_file_with_three_mistakes_reports_three(tmp_path):
    bad = tmp_path / "three.yaml"
    bad.write_text(THREE_MISTAKES)
    r = _check(bad)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, r.stderr
    assert f"{bad}:5:" in errors[0] and "1.5h" in errors[0] and "(at safety.breaker.window)" in errors[0]
    assert f"{bad}:9:" in errors[1] and "unescaped double quote" in errors[1]
    assert "(at policy.rules[0].match[0])" in errors[1]
    assert f"{bad}:18:" in errors[2] and "5m1h" in errors[2] and "(at policy.rules[1].cooldown)" in errors[2]
    assert "3 errors" in r.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("policy:\n  rules:\n  - name: a\n    match: ['a=\"b\"']\n    actions: [{type: nuke}, {type: nuke2}]\n", 2),
    ("safety: {dryrun: true, budget: {max_percent: 120}}\nserver: {listen: nowhere}\n", 3),
    ("policy:\n  rules:\n  - {match: ['a=\"b\"'], actions: [{type: cordon_node, params: {node: x}}]}\n"
     "  - {name: b, match: 'x', actions: []}\n", 3),
])
def test_every_error_is_reported(tmp_path, text, expected):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    r = _check(bad)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == expected, r.stderr
    assert all(f"{bad}:" in e for e in errors) and "Traceback" not in r.stderr


def test_serve_refuses_a_bad_config_naming_every_error(tmp_path):
    bad = tmp_path / "three.yaml"
    bad.write_text(THREE_MISTAKES)
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "serve", "--config", str(bad)], capture_output=True,
                       text=True, env=base, timeout=60)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(errors) == 4 and "VIGIL_WEBHOOK_TOKEN is not set" in errors[0], r.stderr  # serve needs the secret


def test_explain_needs_no_secrets(tmp_path):
    from .payloads import alert, body, xid_labels

    payload = tmp_path / "p.json"
    payload.write_text(__import__("json").dumps(body(alert(xid_labels("n1")))))
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "explain", "--config", str(EXAMPLE), str(payload)],
                       capture_output=True, text=True, env=base, timeout=60)
    assert r.returncode == 0 and "cordon_node(n1), drain_node(n1)" in r.stdout and "=> act" in r.stdout, r.stderr
