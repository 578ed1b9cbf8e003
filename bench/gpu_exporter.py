"""GPU exporter: scrape time of 8 simulated GPUs against serving the same bytes pre-rendered
through the same HTTP server, and resident memory after 1,000 scrapes."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

SCRAPES = 1000
ROUNDS = 10


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    port = _port()
    proc = subprocess.Popen([sys.executable, *args, *(["--listen", f"127.0.0.1:{port}"] if "-m" in args[:1] and
                                                     "exporters.gpu.cli" in args else [str(port)])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    for _ in range(400):
        try:
            requests.get(url, timeout=2)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.025)
    proc.kill()
    raise RuntimeError(f"{args} did not start")


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _times(session: requests.Session, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url, timeout=30, headers={"Accept-Encoding": "identity"})  # same bytes both sides
        r.content  # noqa: B018
        out.append(time.perf_counter() - t)
    return out


def _ratio(exporter_url: str, baseline_url: str, scrapes: int, rounds: int) -> tuple[float, float, float]:
    """Interleaved rounds so machine noise hits both sides alike; medians of each."""
    s = requests.Session()
    exp, base = [], []
    per_round = scrapes // rounds
    for _ in range(rounds):
        exp += _times(s, exporter_url, per_round)
        base += _times(s, baseline_url, per_round)
    e, b = statistics.median(exp), statistics.median(base)
    return e / b, e, b


def run(*, smoke: bool = False) -> list[tuple[str, str, str, str]]:
    scrapes, rounds = (20, 2) if smoke else (SCRAPES, ROUNDS)
    cli = ["-m", "exporters.gpu.cli", "--backend", "simulated", "--simulated-gpus", "8"]
    fresh, fresh_url = _start(cli)  # the defaults: a fresh collection per scrape
    shared, shared_url = _start([*cli, "--min-interval", "1"])
    procs = [fresh, shared]
    try:
        body = requests.get(fresh_url, timeout=10).content
        with tempfile.NamedTemporaryFile(delete=False, suffix=".prom") as f:
            f.write(body)
        static, static_url = _start(["-m", "bench.static_server", f.name])
        procs.append(static)
        ratio_fresh, t_fresh, t_base = _ratio(fresh_url, static_url, scrapes, rounds)
        ratio_shared, t_shared, _ = _ratio(shared_url, static_url, scrapes, rounds)
        rss = _rss_mib(fresh.pid)  # after its 1,000 scrapes (plus warm-up)
        os.unlink(f.name)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    series = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    return [
        (f"gpu-exporter scrape, 8 GPUs, defaults: fresh collection ({series} series)",
         f"{ratio_fresh:.2f}x ({t_fresh * 1e3:.2f} ms vs {t_base * 1e3:.2f} ms pre-rendered)", "<= 1.5x",
         "yes" if ratio_fresh <= 1.5 else "no"),
        ("gpu-exporter scrape, 8 GPUs, --min-interval 1 (shared)",
         f"{ratio_shared:.2f}x ({t_shared * 1e3:.2f} ms)", "<= 1.5x", "yes" if ratio_shared <= 1.5 else "no"),
        (f"gpu-exporter RSS after {scrapes} scrapes", f"{rss:.1f} MiB", "<= 40 MiB", "yes" if rss <= 40 else "no"),
    ]
