"""Remediator intake: durable ingest rate against a no-op handler on the same server, p99 ack
latency at a fixed 200 req/s, and one 10,000-alert notification against a no-op handler's POST of
the same body plus json.loads of it.

The baseline is a Flask view on waitress (`bench/noop_server.py`); the remediator's webhook is a
plain WSGI handler in front of its Flask app, so the ingest ratio also counts Flask's own cost per
request, which the webhook no longer pays. Each storm is posted to an idle engine: the ratio times
one notification, not the decisions of the one before it."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

from bench.gpu_exporter import _port

TOKEN = "bench-token"
LUA = """
local counter = 0
local threads = {}
function setup(thread) thread:set("tid", #threads) table.insert(threads, thread) end
function init(args) prefix = string.format("%x", 4096 + tid) end
request = function()
  counter = counter + 1
  local fp = prefix .. string.format("%08x", counter)
  local body = '{"version":"4","status":"firing","receiver":"vigil","groupKey":"g","truncatedAlerts":0,' ..
    '"alerts":[{"status":"firing","labels":{"alertname":"BenchAlert","node":"n' .. fp .. '"},' ..
    '"annotations":{},"startsAt":"2026-11-22T12:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"' ..
    fp .. '"}]}'
  return wrk.format("POST", "/webhook/alertmanager",
    {["Content-Type"]="application/json", ["Authorization"]="Bearer TOKEN"}, body)
end
""".replace("TOKEN", TOKEN)


def _wait(url: str, proc: subprocess.Popen) -> None:
    for _ in range(400):
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError as exc:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read() if proc.stdout else "server exited") from exc
            time.sleep(0.025)
    raise RuntimeError(f"{url} did not come up")


def _wrk(url: str, script: str, seconds: int = 6) -> float:
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", script, url], capture_output=True,
                         text=True, timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or non2xx:
        raise RuntimeError(f"wrk: {out}")
    return float(m.group(1))


def _fixed_rate(url: str, rate: int, seconds: float) -> list[float]:
    """Open-loop: requests start on a fixed schedule, latency from the scheduled start."""
    lat: list[float] = []
    lock = threading.Lock()
    n = int(rate * seconds)
    t0 = time.perf_counter() + 0.2
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def worker(k: int, step: int) -> None:
        s = requests.Session()
        for i in range(k, n, step):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            fp = f"{0xF00000 + i:x}"
            b = {"version": "4", "status": "firing", "receiver": "v", "groupKey": "g", "truncatedAlerts": 0,
                 "alerts": [{"status": "firing", "labels": {"alertname": "Lat", "i": fp}, "annotations": {},
                             "startsAt": "2026-11-22T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                             "fingerprint": fp}]}
            r = s.post(url, json=b, headers=headers, timeout=30)
            r.raise_for_status()
            with lock:
                lat.append(time.perf_counter() - due)

    threads = [threading.Thread(target=worker, args=(k, 8)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat


def _settle(base: str, timeout: float = 300.0) -> None:
    """Until the engine has decided every incident the ingest rows left pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = requests.get(f"{base}/metrics", timeout=10).text
        pending = re.search(r'^vigil_incidents\{status="pending"\} ([0-9.e+]+)$', text, re.M)
        if pending is None or float(pending.group(1)) == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the engine did not decide the ingest rows' incidents in {timeout:.0f} s")


def _storm_body(n: int) -> bytes:
    alerts = [{"status": "firing", "labels": {"alertname": "Storm", "node": f"node-{i % 500}", "gpu": str(i % 8),
                                              "i": str(i)},
               "annotations": {"summary": "storm", "description": f"alert {i}"},
               "startsAt": "2026-11-22T12:00:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
               "generatorURL": "http://prometheus:9090/graph", "fingerprint": f"{0xA000000 + i:x}"}
              for i in range(n)]
    return json.dumps({"version": "4", "status": "firing", "receiver": "v", "groupKey": "g", "truncatedAlerts": 0,
                       "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
                       "alerts": alerts}).encode()


def _storm_once(url: str, noop_url: str, body: bytes, n: int) -> tuple[float, float]:
    """The remediator's POST of the body, and the baseline: the no-op's POST of it plus json.loads."""
    t0 = time.perf_counter()
    requests.post(noop_url, data=body, headers={"Content-Type": "application/json"}, timeout=120)
    json.loads(body)
    t1 = time.perf_counter()
    r = requests.post(url, data=body, headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                      timeout=120)
    t2 = time.perf_counter()
    if r.status_code != 200 or r.json()["new"] != n:
        raise RuntimeError(f"storm POST: {r.status_code} {r.text[:200]}")
    return t2 - t1, t1 - t0


def _storm(url: str, noop_url: str, base: str, *, n: int = 10_000, runs: int = 5,
           ) -> tuple[float, list[float], list[float]]:
    """The median of per-run ratios, interleaved so that noise hits both alike. Each run waits for an
    idle engine, so it times one notification, not the decisions of the rows or the storm before
    it; each run's storm names new incidents."""
    storm = _storm_body(n)
    ratios, posts, baselines = [], [], []
    for k in range(runs):
        _settle(base)
        post, baseline = _storm_once(url, noop_url, storm.replace(b'"fingerprint": "a',
                                                                  f'"fingerprint": "{k + 1}'.encode()), n)
        ratios.append(post / baseline)
        posts.append(post)
        baselines.append(baseline)
    return statistics.median(ratios), posts, baselines


def run(*, smoke: bool = False) -> list[tuple[str, str, str, str]]:
    wrk_s, rate_s, storm_n, storm_runs = (1, 1.0, 200, 1) if smoke else (6, 10.0, 10_000, 5)
    tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    cfg = tmp / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({"auth": {"bearer_token_env": "VIGIL_BENCH_TOKEN"},
                                   "ledger": {"path": str(tmp / "ledger.db")}, "safety": {"dry_run": True},
                                   "server": {"max_body_bytes": 64 * 1024 * 1024}}))
    script = tmp / "post.lua"
    script.write_text(LUA)
    env = {**os.environ, "VIGIL_BENCH_TOKEN": TOKEN}
    port, noop_port = _port(), _port()
    rem = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(cfg), "--listen",
                            f"127.0.0.1:{port}", "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    noop = subprocess.Popen([sys.executable, "-m", "bench.noop_server", str(noop_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url, noop_url = f"http://127.0.0.1:{port}/webhook/alertmanager", f"http://127.0.0.1:{noop_port}/webhook/alertmanager"
        _wait(f"http://127.0.0.1:{port}/healthz", rem)
        _wait(f"http://127.0.0.1:{noop_port}/", noop)
        durable, baseline = [], []
        for _ in range(2):  # interleaved, so noise hits both alike
            baseline.append(_wrk(noop_url, str(script), wrk_s))
            durable.append(_wrk(url, str(script), wrk_s))
        ratio = max(durable) / max(baseline)
        lat = sorted(_fixed_rate(url, 200, rate_s))
        p99 = lat[int(len(lat) * 0.99) - 1]
        storm_ratio, posts, baselines = _storm(url, noop_url, f"http://127.0.0.1:{port}", n=storm_n, runs=storm_runs)
    finally:
        for p in (rem, noop):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    return [
        ("remediator durable ingest vs no-op handler", f"{ratio:.2f}x ({max(durable):.0f} vs {max(baseline):.0f} "
         "req/s)", ">= 0.6x", "yes" if ratio >= 0.6 else "no"),
        ("remediator p99 ack latency at 200 req/s", f"{p99 * 1e3:.1f} ms (median "
         f"{statistics.median(lat) * 1e3:.1f} ms)", "<= 20 ms", "yes" if p99 <= 0.020 else "no"),
        (f"remediator {storm_n:,}-alert notification vs no-op POST + json.loads", f"{storm_ratio:.1f}x "
         f"({statistics.median(posts) * 1e3:.0f} ms vs {statistics.median(baselines) * 1e3:.0f} ms)", "<= 3x",
         "yes" if storm_ratio <= 3 else "no"),
    ]
