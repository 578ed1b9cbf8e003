"""The three commands share their flags: --version, --log-level and --log-format (JSON lines by
default, or text), and --help shows every default."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.k8s.controlplane import free_port

COMMANDS = {"gpu-exporter": "exporters.gpu.cli", "service-exporter": "exporters.service.cli",
            "remediator": "remediator.cli"}


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", COMMANDS)
def test_version_and_defaults_in_help(name):
    from exporters import __version__ as exporters_version
    from remediator import __version__ as remediator_version

    r = run(COMMANDS[name], "--version")
    version = remediator_version if name == "remediator" else exporters_version
    assert r.returncode == 0 and r.stdout.strip() == f"{name} {version}", r.stdout + r.stderr
    help_args = ("serve", "--help") if name == "remediator" else ("--help",)
    r = run(COMMANDS[name], *help_args)
    assert r.returncode == 0
    flat = " ".join(r.stdout.split())
    assert "--log-format {json,text}" in flat and "log lines as JSON or text (default: json)" in flat
    assert "--log-level {DEBUG,INFO,WARNING,ERROR} (default: INFO)" in flat


def _first_log_line(args: list[str]) -> str:
    p = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = p.stdout.readline()
    finally:
        p.terminate()
        p.wait(15)
    return line


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_gpu_exporter_log_format(fmt):
    line = _first_log_line(["exporters.gpu.cli", "--backend", "simulated", "--listen", f"127.0.0.1:{free_port()}",
                            "--log-format", fmt])
    if fmt == "json":
        rec = json.loads(line)
        assert rec["level"] and rec["logger"] and rec["msg"], line
    else:
        with pytest.raises(ValueError):
            json.loads(line)
        assert " INFO " in line, line


def test_remediator_text_logs_say_at_start_whether_remediation_is_paused(tmp_path):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(f"safety: {{dry_run: true}}\nledger: {{path: {tmp_path / 'l.db'}}}\n")
    line = ""
    p = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--insecure-no-auth",
                          "--listen", f"127.0.0.1:{free_port()}", "--log-format", "text"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        for line in p.stdout:
            seen.append(line)
            if "remediation is" in line:
                break
    finally:
        p.terminate()
        p.wait(15)
    assert "INFO remediator: remediation is active (not paused)" in line, seen
