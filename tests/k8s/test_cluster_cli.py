"""`make cluster` / `make cluster-down` heal themselves: repeatable in any order, and after a crash.

One sequence, so the cluster starts only three times: up, up again (reused), down, down again,
up (fresh), SIGKILL every process then up (leftovers removed, fresh cluster), SIGKILL again then
down (leftovers removed, never "no cluster running" while files remain)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.k8s import bins
from tests.k8s.controlplane import process_identity, wait_until

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[2]
NODES = ["gpu-node-0", "gpu-node-1"]


def _make(root: Path, target: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), target, f"CLUSTER_DIR={root}",
                        f"NODES={len(NODES)}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"make {target} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def _pids(root: Path) -> list[int]:
    state = json.loads((root / "cluster/state.json").read_text())
    return [p["pid"] for p in state["procs"]]


def _gone(pid: int) -> bool:
    return process_identity(pid) is None  # no such process, or a zombie waiting for its parent


def _assert_working(root: Path) -> None:
    kubectl = [str(bins.binary("kubectl")), "--kubeconfig", str(root / "kubeconfig")]
    nodes = subprocess.run([*kubectl, "get", "nodes", "-o", "json"], capture_output=True, text=True, check=True,
                           timeout=60)
    items = json.loads(nodes.stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in items) == NODES
    for n in items:
        assert n["status"]["capacity"]["nvidia.com/gpu"] == "8"
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", n["metadata"]["name"]
    pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-n", "inference", "-o", "json"],
                                     capture_output=True, text=True, check=True, timeout=60).stdout)["items"]
    assert len(pods) == 4 and all(p["status"]["phase"] == "Running" for p in pods)


def _sigkill_all(root: Path) -> list[int]:
    pids = _pids(root)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all(_gone(p) for p in pids), 30, what="the killed processes to exit")
    return pids


def test_cluster_targets_are_repeatable_and_recover_from_a_killed_cluster(tmp_path):
    root = tmp_path / "local"
    try:
        first = _make(root, "cluster")
        assert "cluster up in" in first.stdout and "leftovers" not in first.stdout + first.stderr
        _assert_working(root)
        pids = _pids(root)
        again = _make(root, "cluster")
        assert "already running: reusing it" in again.stdout
        assert _pids(root) == pids

        down = _make(root, "cluster-down")
        assert "stopped" in down.stdout
        assert all(_gone(p) for p in pids)
        assert not (root / "cluster").exists() and not (root / "kubeconfig").exists()
        assert "no cluster running" in _make(root, "cluster-down").stdout

        _make(root, "cluster")  # a second start in the same place: no 409, no leftovers
        _assert_working(root)

        _sigkill_all(root)
        assert (root / "cluster/etcd-data").is_dir()
        healed = _make(root, "cluster")
        assert "no longer running" in healed.stdout and "removed it, starting a fresh cluster" in healed.stdout
        _assert_working(root)

        _sigkill_all(root)
        cleaned = _make(root, "cluster-down")
        assert "no cluster running" not in cleaned.stdout
        assert "removed" in cleaned.stdout
        assert not (root / "cluster").exists()
    finally:
        subprocess.run(["make", "-C", str(REPO), "cluster-down", f"CLUSTER_DIR={root}"], capture_output=True,
                       timeout=120)


@pytest.mark.parametrize("state", [None, {"tier": "cluster", "server": "https://127.0.0.1:1", "token": "t",
                                          "kubeconfig": "k", "ca": "c",
                                          "procs": [{"name": "etcd", "pid": 2 ** 22 + 7, "log": "etcd.log",
                                                     "identity": "gone:1"}]}])
def test_cluster_down_removes_what_a_dead_cluster_left(tmp_path, state):
    """An old `cluster-down` or a reboot left etcd-data (and maybe a state file with dead pids)."""
    root = tmp_path / "local"
    (root / "cluster/etcd-data/member").mkdir(parents=True)
    (root / "kubeconfig").write_text("{}")
    if state:
        (root / "cluster/state.json").write_text(json.dumps(state))
    r = subprocess.run([sys.executable, "-m", "tests.k8s", "down", "--dir", str(root)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "no cluster running" not in r.stdout and "removed" in r.stdout, r.stdout
    assert not (root / "cluster").exists() and not (root / "kubeconfig").exists()
