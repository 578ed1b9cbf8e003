"""100,000 generated hostile requests against the real server (waitress on 127.0.0.1, the real
ledger and engine, the session's local cluster): no 5xx, every error body JSON, the same process,
bounded memory, and a valid alert afterwards is acted on (its node cordoned)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes import client

from remediator.web.server import waitress_limit
from tests.k8s.controlplane import add_gpu_nodes, free_port, wait_until

from .fuzz import Client, Generator, Response
from .payloads import alert, body

pytestmark = pytest.mark.k8s
TOKEN = "fuzz-token-0123456789"
MAX_BODY = 16 * 1024
REQUESTS = int(os.environ.get("VIGIL_FUZZ_REQUESTS", "100000"))
WARMUP = 3000
THREADS = 4


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(k8s_cluster, tmp_path, unique):
    pool = f"fuzz-{unique}"
    node = f"{pool}-n0"
    add_gpu_nodes(k8s_cluster.api_client(), [node], pool=pool)
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({
        "auth": {"bearer_token_env": "VIGIL_FUZZ_TOKEN"}, "server": {"max_body_bytes": MAX_BODY},
        "ledger": {"path": str(tmp_path / "ledger.db")},
        "kubernetes": {"kubeconfig": str(k8s_cluster.kubeconfig), "node_selector": f"vigil.io/pool={pool}"},
        "safety": {"budget": {"max_nodes": 1, "min_nodes": 0}},
        "policy": {"rules": [{"name": "final", "match": ['alertname="VigilFuzzFinal"'],
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]},
    }))
    port = free_port()
    log = (tmp_path / "remediator.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--listen",
                             f"127.0.0.1:{port}", "--log-level", "WARNING"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "VIGIL_FUZZ_TOKEN": TOKEN})
    try:
        wait_until(lambda: _up(port) or proc.poll() is not None, 30, what="remediator up")
        assert proc.poll() is None, (tmp_path / "remediator.log").read_text()[-2000:]
        yield proc, port, node, client.CoreV1Api(k8s_cluster.api_client())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        client.CoreV1Api(k8s_cluster.api_client()).delete_node(node)


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
    except requests.ConnectionError:
        return False


def _run(port: int, seed: int, count: int, out: list, bad: list) -> None:
    gen = iter(Generator(seed, TOKEN, MAX_BODY, waitress_limit(MAX_BODY)))
    conn = Client("127.0.0.1", port)
    statuses: Counter = Counter()
    try:
        for _ in range(count):
            req = next(gen)
            resp: Response = conn.send(req)
            statuses[(req.kind, resp.status)] += 1
            if resp.status >= 500 or (resp.status >= 400 and not _json_error(resp)):
                bad.append((req.kind, resp.status, resp.content_type, resp.body[:300], req.body[:300]))
    finally:
        conn.close()
        out.append(statuses)


def _json_error(resp: Response) -> bool:
    if not resp.content_type.startswith("application/json"):
        return False
    try:
        return isinstance(json.loads(resp.body).get("error"), str)
    except ValueError:
        return False


def _fuzz(port: int, seed: int, total: int) -> Counter:
    out: list[Counter] = []
    bad: list = []
    threads = [threading.Thread(target=_run, args=(port, seed + k, total // THREADS, out, bad))
               for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == THREADS, "a client thread died (see the log)"
    assert not bad, f"{len(bad)} answers were 5xx or not a JSON error, e.g. {bad[:3]}"
    return sum(out, Counter())


def test_100k_hostile_requests_never_stall_the_remediator(server):
    proc, port, node, core = server
    _fuzz(port, 1000, WARMUP)
    before = rss_kib(proc.pid)
    t0 = time.monotonic()
    counts = _fuzz(port, 2000, REQUESTS)
    elapsed = time.monotonic() - t0
    after = rss_kib(proc.pid)
    by_status = Counter()
    for (_, status), n in counts.items():
        by_status[status] += n
    print(f"\n{sum(counts.values())} requests in {elapsed:.0f} s; statuses {dict(by_status)}; "
          f"RSS {before // 1024} -> {after // 1024} MiB")
    assert sum(counts.values()) >= REQUESTS - THREADS
    assert proc.poll() is None  # the same process answered all of them
    assert {200, 400, 401, 413} <= set(by_status), by_status  # the generator reached every gate
    assert after - before < 20 * 1024, f"RSS grew {before} -> {after} KiB"
    final = body(alert({"alertname": "VigilFuzzFinal", "node": node}))
    r = requests.post(f"http://127.0.0.1:{port}/webhook/alertmanager", json=final,
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 200 and r.json()["new"] == 1, r.text
    wait_until(lambda: core.read_node(node).spec.unschedulable, 120, what="the final alert's node cordoned")
