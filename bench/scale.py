"""The remediator at cluster scale: a local control plane (etcd + kube-apiserver), N simulated nodes
with 8 GPUs each (VIGIL_BENCH_NODES, default 5,000; 10 for the baseline), the real remediator process.

The nodes are the objects kwok makes (the same `gpu_node`, made Ready through the status
subresource) without kwok's heartbeats: on 2 cores, kwok, the node-lifecycle controller and 5,000
Lease renewals did not get 2,000 nodes Ready in 10 minutes, and the remediator reads only the Node
objects (watched once, then patched), which are the same either way.

Rows: webhook -> cordon median at N nodes against the same at 10 nodes, Kubernetes API requests
per cordon incident (counted client side, by the remediator: vigil_kubernetes_requests_total), and
the remediator's RSS at N nodes, peak included (VmHWM)."""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml
from kubernetes import client

from tests.k8s.controlplane import free_port, gpu_node, start, wait_until
from tests.remediator.payloads import alert, body, xid_labels

TOKEN = "bench-scale-token"
INCIDENTS = 9


def _nodes(api, pool: str, n: int) -> list[str]:
    core = client.CoreV1Api(api)
    names = [f"{pool}-{i:05d}" for i in range(n)]
    now = dt.datetime.now(dt.UTC).isoformat()
    ready = {"status": {"conditions": [
        {"type": t, "status": s, "reason": r, "message": "", "lastHeartbeatTime": now, "lastTransitionTime": now}
        for t, s, r in (("Ready", "True", "KubeletReady"), ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                        ("PIDPressure", "False", "KubeletHasSufficientPID"))],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}  # as kwok --node-ip; data only

    def make(name: str) -> None:
        core.create_node(gpu_node(name, pool=pool))
        core.patch_node_status(name, ready)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(make, names))
    return names


def _metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def _measure(cp, tmp: Path, pool: str, names: list[str]) -> dict:
    """Start a remediator on the pool, send INCIDENTS XID alerts one at a time, time each cordon."""
    cfg = tmp / f"{pool}.yaml"
    cfg.write_text(yaml.safe_dump({
        "auth": {"bearer_token_env": "VIGIL_BENCH_TOKEN"}, "ledger": {"path": str(tmp / f"{pool}.db")},
        "kubernetes": {"kubeconfig": str(cp.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "safety": {"budget": {"max_nodes": INCIDENTS, "min_nodes": 1}, "breaker": {"max_actions": 100}},
        "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]},
    }))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--listen",
                             f"127.0.0.1:{port}", "--log-level", "WARNING"], env={**os.environ,
                            "VIGIL_BENCH_TOKEN": TOKEN}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    core = client.CoreV1Api(cp.api_client())
    try:
        wait_until(lambda: _ready(url), 300, interval=0.5, what="remediator ready (cache synced)")
        before = _metric(url, "vigil_kubernetes_requests_total")
        delays = []
        for node in names[:INCIDENTS]:
            t0 = time.perf_counter()
            r = requests.post(f"{url}/webhook/alertmanager", json=body(alert(xid_labels(node))),
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            r.raise_for_status()
            wait_until(lambda n=node: core.read_node(n).spec.unschedulable, 120, interval=0.01,
                       what=f"{node} cordoned")
            delays.append(time.perf_counter() - t0)
        wait_until(lambda: _metric(url, 'vigil_incidents{status="succeeded"}') == INCIDENTS, 60, what="recorded")
        requests_per = (_metric(url, "vigil_kubernetes_requests_total") - before) / INCIDENTS
        inside = []  # received -> the action finished, as the remediator recorded it
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for item in requests.get(f"{url}/api/incidents", headers=auth, timeout=10).json()["items"]:
            inc = requests.get(f"{url}/api/incidents/{item['id']}", headers=auth, timeout=10).json()
            inside.append(_seconds(inc["actions"][0]["finished_at"]) - _seconds(inc["received_at"]))
        return {"median": statistics.median(delays), "requests": requests_per, "inside": statistics.median(inside),
                "rss": _status_kib(proc.pid, "VmRSS:") / 1024, "peak": _status_kib(proc.pid, "VmHWM:") / 1024}
    finally:
        proc.terminate()
        proc.wait(30)


def _seconds(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def run(*, smoke: bool = False) -> list[tuple[str, str, str, str]]:
    n = 20 if smoke else int(os.environ.get("VIGIL_BENCH_NODES", "5000"))
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-scale-"))
    cp = start(tmp / "k8s", "api", timeout=180)
    try:
        api = cp.api_client()
        small = _measure(cp, tmp, "small", _nodes(api, "small", 10))
        large = _measure(cp, tmp, "large", _nodes(api, "large", n))
    finally:
        cp.stop()
    ratio = large["median"] / small["median"]
    return [
        (f"webhook -> cordon median, {n} vs 10 nodes", f"{ratio:.2f}x ({large['median'] * 1e3:.0f} ms vs "
         f"{small['median'] * 1e3:.0f} ms; in the remediator {large['inside'] * 1e3:.0f} vs "
         f"{small['inside'] * 1e3:.0f} ms)", "<= 1.5x", "yes" if ratio <= 1.5 else "no"),
        (f"API requests per cordon incident ({n} nodes)", f"{large['requests']:.1f}", "<= 3",
         "yes" if large["requests"] <= 3 else "no"),
        (f"remediator RSS at {n} nodes (peak)", f"{large['rss']:.0f} MiB (peak {large['peak']:.0f} MiB)",
         "<= 200 MiB", "yes" if large["peak"] <= 200 else "no"),
    ]


if __name__ == "__main__":
    for row in run():
        print("  ".join(row))
