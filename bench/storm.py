"""Storm recovery: N faulty kwok nodes under a node budget of k, each repaired by a simulated ladder
of fixed length L. The real remediator process (`remediator serve`) runs a rule that cordons on an
XID and uncordons on its resolve; a simulated node agent in the bench sends the alert's resolve to
the webhook L seconds after it sees the node cordoned (the repair), and Vigil's on_resolved uncordon
returns the node.

The row: the time from the storm (all N alerts in one notification) until all N are back in
service, against the ideal ceil(N/k) x L, and the peak number of nodes out, sampled every 0.2 s
(never more than k). The measured column also says where the time beyond the ideal goes: the first
cordon after the storm, resolve -> uncordon, and a returned node -> the next cordon in its slot."""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml
from kubernetes import client

from tests.k8s.controlplane import add_gpu_nodes, free_port, start, wait_until
from tests.remediator.payloads import alert, body, xid_labels

TOKEN = "bench-storm-token"
GOAL = 1.2
POLICY = {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                     "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}],
                     "on_resolved": {"uncordon": True}}]}


class Agent:
    """The simulated node agents and the sampler. Polls the pool every 0.05 s: a node seen cordoned
    for the first time is 'repaired' L seconds later (its alert's resolve goes to the webhook); a
    resolved node seen schedulable again is back in service. A second thread counts the nodes out
    every 0.2 s and keeps the peak."""

    def __init__(self, core, url: str, pool: str, firing: dict[str, dict], ladder: float) -> None:
        self.core, self.url, self.pool, self.firing, self.ladder = core, url, pool, firing, ladder
        self.cordoned: dict[str, float] = {}
        self.resolved: dict[str, float] = {}
        self.returned: dict[str, float] = {}
        self.peak, self.errors = 0, []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._watch, daemon=True),
                         threading.Thread(target=self._sample, daemon=True)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)

    def _out(self) -> dict[str, bool]:
        nodes = self.core.list_node(label_selector=f"vigil.io/pool={self.pool}").items
        return {n.metadata.name: bool(n.spec.unschedulable) for n in nodes}

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                state = self._out()
            except Exception as exc:  # a failed poll is retried; the row reports it
                self.errors.append(f"poll: {exc}")
                continue
            now = time.monotonic()
            for node, out in state.items():
                if out and node not in self.cordoned:
                    self.cordoned[node] = now
                    threading.Timer(self.ladder, self._repair, args=(node,)).start()
                elif not out and node in self.resolved and node not in self.returned:
                    self.returned[node] = now

    def _repair(self, node: str) -> None:
        if self._stop.is_set():
            return
        fired = self.firing[node]["alerts"][0]
        resolved = body(dict(fired, status="resolved", endsAt=dt.datetime.now(dt.UTC).isoformat()))
        try:
            r = requests.post(f"{self.url}/webhook/alertmanager", json=resolved,
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            r.raise_for_status()
        except Exception as exc:
            self.errors.append(f"resolve {node}: {exc}")
        self.resolved[node] = time.monotonic()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, sum(self._out().values()))
            except Exception as exc:
                self.errors.append(f"sample: {exc}")


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def measure(cp, tmp: Path, *, n: int = 16, k: int = 2, ladder: float = 5.0, pool: str = "storm") -> dict:
    """One storm of n faults on a pool of its own of cp's cluster; the timings and the peak."""
    api = cp.api_client()
    core = client.CoreV1Api(api)
    names = [f"{pool}-n{i:02d}" for i in range(n)]
    add_gpu_nodes(api, names, pool=pool)

    def in_service(name: str) -> bool:
        node = core.read_node(name)
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        return ready and not node.spec.taints and not node.spec.unschedulable
    wait_until(lambda: all(in_service(x) for x in names), 120, what="kwok nodes Ready and untainted")

    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / f"{pool}.yaml"
    cfg.write_text(yaml.safe_dump({
        "auth": {"bearer_token_env": "VIGIL_BENCH_TOKEN"}, "ledger": {"path": str(tmp / f"{pool}.db")},
        "kubernetes": {"kubeconfig": str(cp.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "safety": {"budget": {"max_nodes": k, "min_nodes": 1}, "breaker": {"max_actions": 10 * n, "window": "5m"}},
        "policy": POLICY,
    }))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / f"{pool}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--listen",
                             f"127.0.0.1:{port}", "--log-level", "WARNING"],
                            env={**os.environ, "VIGIL_BENCH_TOKEN": TOKEN}, stdout=log, stderr=subprocess.STDOUT)
    agent = None
    try:
        wait_until(lambda: _ready(url) or proc.poll() is not None, 120, interval=0.2, what="remediator ready")
        if proc.poll() is not None:
            raise RuntimeError(f"the remediator exited: {(tmp / f'{pool}.log').read_text()[-500:]}")
        firing = {x: body(alert(xid_labels(x))) for x in names}
        storm = body(*(f["alerts"][0] for f in firing.values()))
        agent = Agent(core, url, pool, firing, ladder)
        agent.start()
        t0 = time.monotonic()
        r = requests.post(f"{url}/webhook/alertmanager", json=storm, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30)
        r.raise_for_status()
        ideal = math.ceil(n / k) * ladder
        deadline = t0 + 3 * ideal + 30
        while len(agent.returned) < n and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        agent.stop()
        if len(agent.returned) < n:
            why = "the remediator exited" if proc.poll() is not None else f"not all back in {deadline - t0:.0f} s"
            raise RuntimeError(f"{why}: {len(agent.returned)} of {n} back, {len(agent.cordoned)} cordoned; "
                               f"{'; '.join(agent.errors[:3])}")
        total = max(agent.returned.values()) - t0
        cordons, returns = sorted(agent.cordoned.values()), sorted(agent.returned.values())
        # the slot that cordon i (i >= k) took was freed by return i - k
        handoff = [cordons[i] - returns[i - k] for i in range(k, n)]
        uncordon = [agent.returned[x] - agent.resolved[x] for x in names]
        return {"n": n, "k": k, "ladder": ladder, "ideal": ideal, "total": total, "peak": agent.peak,
                "first": cordons[0] - t0, "uncordon": statistics.median(uncordon), "uncordon_max": max(uncordon),
                "handoff": statistics.median(handoff) if handoff else 0.0, "handoff_max": max(handoff, default=0.0),
                "errors": agent.errors}
    finally:
        if agent is not None:
            agent.stop()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def row(m: dict) -> tuple[str, str, str, str]:
    ratio = m["total"] / m["ideal"]
    met = ratio <= GOAL and m["peak"] <= m["k"]
    return (f"storm recovery, {m['n']} faults, budget {m['k']}, ladder {m['ladder']:g} s",
            f"{ratio:.2f}x ({m['total']:.1f} s vs ideal {m['ideal']:.0f} s; peak {m['peak']} out; first cordon "
            f"{m['first']:.2f} s, resolve -> uncordon median {m['uncordon']:.2f} s (max {m['uncordon_max']:.2f}), "
            f"return -> next cordon median {m['handoff']:.2f} s (max {m['handoff_max']:.2f}))",
            f"<= {GOAL}x, peak <= {m['k']}", "yes" if met else "no")


def run(*, smoke: bool = False, n: int | None = None, ladder: float | None = None) -> list[tuple[str, str, str, str]]:
    """The row; `smoke`: 4 faults and a 1 s ladder (it runs; the figure is no measurement)."""
    n = n or (4 if smoke else int(os.environ.get("VIGIL_BENCH_STORM_NODES", "16")))
    ladder = ladder or (1.0 if smoke else float(os.environ.get("VIGIL_BENCH_STORM_LADDER", "5")))
    name = f"storm recovery, {n} faults, budget 2, ladder {ladder:g} s"
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-storm-"))
    try:
        cp = start(tmp / "k8s", "cluster", timeout=180)
    except Exception as exc:  # the row prints even when it fails, and says why
        return [(name, f"failed: local cluster did not start: {exc}"[:300], f"<= {GOAL}x, peak <= 2", "no")]
    try:
        return [row(measure(cp, tmp, n=n, ladder=ladder))]
    except Exception as exc:
        return [(name, f"failed: {exc}"[:300], f"<= {GOAL}x, peak <= 2", "no")]
    finally:
        cp.stop()


if __name__ == "__main__":
    for r in run():
        print("  ".join(r))
