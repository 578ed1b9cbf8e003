"""Service exporter: 500 targets on a 5 s interval, on this 2-core machine: the exporter's CPU
share and how late probes start against their schedule (p99)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from bench.gpu_exporter import _port
from exporters.service.config import parse_config
from exporters.service.exporter import build

TARGETS, INTERVAL, SECONDS = 500, 5.0, 20.0


def _interval(seconds: float) -> str:
    """A Prometheus duration string: integer milliseconds ("5.0s" is not one)."""
    return f"{round(seconds * 1000)}ms"


def run(*, smoke: bool = False) -> list[tuple[str, str, str, str]]:
    targets, interval, seconds = (20, 1.0, 2.0) if smoke else (TARGETS, INTERVAL, SECONDS)
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "bench.target_server", str(port)])  # not our CPU
    try:
        time.sleep(1)
        cfg = parse_config({"interval": _interval(interval), "concurrency": 64,
                            "modules": {"h": {"prober": "http", "timeout": "2s"}},
                            "targets": [{"name": f"t{i}", "url": f"http://127.0.0.1:{port}", "module": "h",
                                         "labels": {"namespace": "bench", "service": f"s{i % 10}"}}
                                        for i in range(targets)]}, "bench")
        exp = build(cfg)
        exp.start()
        time.sleep(interval)  # warm up: every target probed once, connections pooled
        exp.scheduler.start_delays.clear()
        cpu0, t0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
        delays = sorted(exp.scheduler.start_delays)
        ok = sum(r.success for _, r in exp.scheduler.snapshot())
        exp.stop()
    finally:
        server.terminate()
        server.wait(10)
    p99 = delays[int(len(delays) * 0.99) - 1] if delays else float("nan")
    cores = os.cpu_count() or 1
    return [
        (f"service-exporter, {targets} targets every {interval:g} s: CPU", f"{cpu:.1%} of one core "
         f"({cpu / cores:.1%} of {cores})", "", ""),
        (f"service-exporter, {targets} targets: probe start jitter p99", f"{p99 * 1e3:.1f} ms (median "
         f"{statistics.median(delays) * 1e3:.1f} ms, {len(delays)} probes, {ok}/{targets} up)", "<= 100 ms",
         "yes" if p99 <= 0.1 else "no"),
    ]
