"""Adversarial: YAML shapes any document may have. 25 levels of aliases that each double the last
(under 1 KiB) made check-config (and serve) walk 2^25 paths for line numbers: it never finished. A
nesting 3,000 deep or an alias that contains itself ended in a RecursionError traceback. Each must
be one error naming the file, exit status 2, at once (the real CLI in a subprocess, bounded by a
generous ceiling that only a hang reaches)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _bomb() -> str:
    lines = ["x0: &a0 [1, 2]"] + [f"x{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 26)]
    return "\n".join(lines) + "\n"


SHAPES = {
    "alias bomb": _bomb(),
    "alias bomb under a known key": "server: {listen: *b}\n" + _bomb().replace("&a25", "&b"),
    "deep nesting": "policy: " + "[" * 3000 + "]" * 3000 + "\n",
    "recursive alias": "policy: &x {rules: [*x]}\n",
}


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_hostile_yaml_shapes_are_one_error_and_exit_2(tmp_path, text, command):
    path = tmp_path / "vigil.yaml"
    path.write_text(text)
    args = [str(path)] if command == "check-config" else ["--config", str(path)]
    try:
        out = subprocess.run([sys.executable, "-m", "remediator.cli", command, *args], capture_output=True, text=True,
                             timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} did not finish on a {len(text)}-byte document")
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert str(path) in out.stdout + out.stderr


def test_ordinary_aliases_still_work(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text("safety: {dry_run: true, budget: &b {max_nodes: 2}}\n"
                    "policy:\n  rules:\n  - name: r\n    match: ['alertname=\"A\"']\n"
                    "    actions: &acts [{type: cordon_node, params: {node: '{{ labels.node }}'}}]\n"
                    "  - name: s\n    match: ['alertname=\"B\"']\n    actions: *acts\n")
    out = subprocess.run([sys.executable, "-m", "remediator.cli", "check-config", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
