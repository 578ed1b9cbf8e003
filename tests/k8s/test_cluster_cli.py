"""`make cluster` / `make cluster-down`: nodes Ready, sample pods Running, no process left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.k8s import bins

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[2]


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tests.k8s", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


def test_cluster_up_and_down_leaves_no_process(tmp_path):
    up = _run(tmp_path, "up", "--nodes", "3")
    state = json.loads((tmp_path / ".local/cluster/state.json").read_text())
    pids = [p["pid"] for p in state["procs"]]
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        kubectl = [str(bins.binary("kubectl")), "--kubeconfig",
                   str(tmp_path / ".local/kubeconfig")]
        nodes = subprocess.run([*kubectl, "get", "nodes", "-o", "json"], capture_output=True, text=True, check=True)
        items = json.loads(nodes.stdout)["items"]
        assert sorted(n["metadata"]["name"] for n in items) == ["gpu-node-0", "gpu-node-1", "gpu-node-2"]
        for n in items:
            assert n["status"]["capacity"]["nvidia.com/gpu"] == "8"
            assert {"type": "Ready", "status": "True"}.items() <= next(
                c for c in n["status"]["conditions"] if c["type"] == "Ready").items()
        pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-n", "inference", "-o", "json"],
                                         capture_output=True, text=True, check=True).stdout)["items"]
        assert len(pods) == 4 and all(p["status"]["phase"] == "Running" for p in pods)
        again = _run(tmp_path, "up")
        assert "already running" in again.stdout
    finally:
        down = _run(tmp_path, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), pid
    assert "no cluster running" in _run(tmp_path, "down").stdout
