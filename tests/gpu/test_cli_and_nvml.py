"""The command line and the real nvml backend (nvidia-ml-py) on this machine."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import time

import pynvml
import requests

from exporters.gpu.exporter import load_backend

from .conftest import free_port, make_exporter, one, parse, scrape

CLI = [sys.executable, "-m", "exporters.gpu.cli"]
HAS_DRIVER = ctypes.util.find_library("nvidia-ml") is not None


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_unknown_flag_is_usage_and_exit_2():
    r = run("--frobnicate")
    assert r.returncode == 2 and "usage: gpu-exporter" in r.stderr


def test_bad_listen_is_exit_2():
    r = run("--listen", "nowhere")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr


def test_bad_gpu_count_is_exit_2():
    assert run("--backend", "simulated", "--simulated-gpus", "0").returncode == 2


def test_real_nvml_backend_matches_this_machine():
    exp = make_exporter(load_backend("nvml"))
    assert exp.nvml is pynvml
    s = scrape(exp)
    if HAS_DRIVER:
        assert one(s, "gpu_exporter_nvml_up") == 1
    else:  # this CI machine: no libnvidia-ml, so nvml_up 0 and a clean self-metric scrape
        assert one(s, "gpu_exporter_nvml_up") == 0
        assert one(s, "gpu_exporter_nvml_errors_total", error="library_not_found") >= 1


def test_fail_without_gpu_exits_1_on_a_host_without_driver():
    if HAS_DRIVER:
        return  # the GPU machine has a driver; the flag has nothing to refuse there
    r = run("--backend", "nvml", "--fail-without-gpu", "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "no usable GPU" in r.stderr


def _serve(*args: str):
    port = free_port()
    proc = subprocess.Popen([*CLI, "--listen", f"127.0.0.1:{port}", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(f"{url}/healthz", timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(proc.stdout.read())


def test_nvml_backend_without_driver_keeps_serving():
    proc, url = _serve("--backend", "nvml")
    try:
        s = parse(requests.get(f"{url}/metrics", timeout=10).text)
        assert one(s, "gpu_exporter_nvml_up") == (1 if HAS_DRIVER else 0)
        assert proc.poll() is None, "a DaemonSet pod on a GPU-less node must not crash-loop"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    if not HAS_DRIVER:
        assert sum("NVML unavailable" in line for line in out.splitlines()) == 1, out


def test_simulated_backend_serves_eight_gpus():
    proc, url = _serve("--backend", "simulated", "--simulated-gpus", "8")
    try:
        s = parse(requests.get(f"{url}/metrics", timeout=10).text)
        assert one(s, "gpu_exporter_devices") == 8
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_kernel_log_defaults(tmp_path):
    import argparse

    from exporters.gpu.cli import kernel_log_path

    def ns(**kw):
        return argparse.Namespace(**{"kernel_log": None, "backend": "nvml", **kw})

    assert kernel_log_path(ns(kernel_log="")) is None, "'' turns it off"
    assert kernel_log_path(ns(kernel_log=str(tmp_path / "k"))) == str(tmp_path / "k")
    simulated = kernel_log_path(ns(backend="simulated"))
    assert simulated.endswith("/kmsg") and simulated.startswith("/tmp/vigil-simulated-")
    # as root on this machine /dev/kmsg is readable, so the NVML backend reads it by default
    assert kernel_log_path(ns()) == "/dev/kmsg"
