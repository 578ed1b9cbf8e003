"""The event fast path: pushed alerts equal the rules' alerts, reach the webhook in about a second,
merge with Prometheus' alert into one incident, resolve once, and never hurt scrapes. (The pushed
labels and the rules' come from one definition, vigil_common.pushed_alerts.)"""

from __future__ import annotations

import time

import pytest
import requests

from exporters.gpu.fastpath import PushConfig
from exporters.gpu.server import make_app, serve
from exporters.gpu.simulated import SimulatedNVML
from tests.gpu.conftest import free_port, make_exporter, one, scrape, wait_for
from tests.stack import Stack, WebhookReceiver

NODE = "gpu-node-3"


@pytest.fixture
def fast(tmp_path):
    receiver = WebhookReceiver()
    stack = Stack(tmp_path)
    made = []

    def start(*, prometheus: bool = False, urls: list[str] | None = None, **kw):
        if urls is None:
            stack.start_alertmanager(receiver.url, "token")
            urls = [stack.alertmanager_url]
        sim = SimulatedNVML(8)
        exp = make_exporter(sim, push=PushConfig(urls=urls, node=NODE, resend=2.0, poll=0.2), **kw)
        httpd = serve(make_app(exp), "127.0.0.1", 0)
        made.append((exp, httpd))
        if prometheus:
            stack.start_prometheus([{"job_name": "vigil-gpu-exporter", "static_configs": [
                {"targets": [f"127.0.0.1:{httpd.server_port}"], "labels": {"node": NODE}}]}])
            stack.wait_targets_up("vigil-gpu-exporter")
        return sim, exp, httpd

    yield start, receiver, stack
    for exp, httpd in made:
        exp.stop()
        httpd.shutdown()
    stack.stop()
    receiver.close()


def _firing(body: dict, name: str, **labels: str) -> list[dict]:
    return [a for a in body["alerts"] if a["labels"]["alertname"] == name and a["status"] == "firing"
            and all(a["labels"].get(k) == v for k, v in labels.items())]


@pytest.mark.integration
def test_xid_reaches_the_webhook_through_alertmanager_in_about_a_second(fast):
    start, receiver, _ = fast
    sim, _, _ = start()
    t0 = time.monotonic()
    sim.inject(3, "xid", 79)
    got = receiver.wait_for(lambda b: _firing(b, "GpuXidCritical", gpu="3"), timeout=30)
    print(f"\nfast path: XID 79 injected -> webhook received in {got.at - t0:.2f} s (group_wait 1 s)")
    [alert] = _firing(got.body, "GpuXidCritical", gpu="3")
    assert got.body["version"] == "4"
    assert alert["labels"] == {"alertname": "GpuXidCritical", "node": NODE, "gpu": "3",
                               "uuid": "GPU-5a1e0000-0000-4000-8000-000000000003", "xid": "79",
                               "severity": "critical", "remediation": "auto"}
    assert got.at - t0 < 10


@pytest.mark.integration
def test_the_rules_alert_and_the_push_are_one_incident(fast):
    start, receiver, stack = fast
    sim, _, _ = start(prometheus=True)
    sim.inject(3, "xid", 79)
    receiver.wait_for(lambda b: _firing(b, "GpuXidCritical", gpu="3"), timeout=30)

    def prometheus_fires():
        return [a for a in stack.query('ALERTS{alertname="GpuXidCritical", alertstate="firing", gpu="3"}')]

    deadline = time.monotonic() + 30
    while not prometheus_fires() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert prometheus_fires(), "Prometheus' own rule fired too"
    time.sleep(12)  # let Alertmanager receive Prometheus' alert and flush the group again
    am = requests.get(f"{stack.alertmanager_url}/api/v2/alerts", params={"filter": 'alertname="GpuXidCritical"'},
                      timeout=10).json()
    assert len(am) == 1, "Alertmanager merged the two into one alert"
    seen = {(a["fingerprint"], a["startsAt"]) for r in receiver.received
            for a in _firing(r.body, "GpuXidCritical", gpu="3")}
    assert len(seen) == 1, f"one incident at the receiver, not {seen}"


@pytest.mark.integration
def test_clearing_sends_one_resolved_notification(fast):
    start, receiver, _ = fast
    sim, _, _ = start()
    sim.inject(5, "lost")
    receiver.wait_for(lambda b: _firing(b, "GpuLost", gpu="5"), timeout=30)
    sim.inject(5, "clear")
    receiver.wait_for(lambda b: any(a["labels"]["alertname"] == "GpuLost" and a["status"] == "resolved"
                                    for a in b["alerts"]), timeout=30)
    time.sleep(12)  # a further group_interval: no second resolved notification
    resolved = [r for r in receiver.received if any(a["labels"]["alertname"] == "GpuLost" and
                                                    a["status"] == "resolved" for a in r.body["alerts"])]
    assert len(resolved) == 1


def test_an_unreachable_alertmanager_does_not_hurt_scrapes(fast):
    start, _, _ = fast
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens
    sim, exp, _ = start(urls=[dead])
    for i in range(5):
        sim.inject(i, "xid", 79)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and one(scrape(exp), "gpu_exporter_alert_pushes_total", result="failure") < 1:
        time.sleep(0.1)
    t = time.monotonic()
    s = scrape(exp)
    assert time.monotonic() - t < 2
    assert one(s, "gpu_exporter_alert_pushes_total", result="failure") >= 1
    assert one(s, "gpu_exporter_alert_pushes_total", result="success") == 0
    assert one(s, "gpu_xid_errors_total", gpu="4", xid="79") == 1, "XID counting goes on"


def test_cli_needs_a_node_name_for_the_fast_path():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    r = subprocess.run([sys.executable, "-m", "exporters.gpu.cli", "--backend", "simulated",
                        "--alertmanager-url", "http://127.0.0.1:9"], capture_output=True, text=True, env=env,
                       timeout=30)
    assert r.returncode == 2 and "NODE_NAME" in r.stderr
    r = subprocess.run([sys.executable, "-m", "exporters.gpu.cli", "--backend", "simulated", "--node-name", "n",
                        "--alertmanager-url", "http://127.0.0.1:9", "--alert-events", "xid,meltdown"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2 and "meltdown" in r.stderr


@pytest.mark.integration
def test_a_kernel_log_xid_alone_is_pushed_naming_the_pods(fast, tmp_path):
    """NVML sees nothing (the line is only in the kernel log); the pushed alert still arrives, and
    its description names the pod holding the GPU, as the rule's does."""
    from exporters.gpu.exporter import PodResourcesConfig
    from exporters.gpu.kernel_log import KernelLogConfig

    from .kubelet import FakeKubelet, pod

    kubelet = FakeKubelet(tmp_path / "kubelet.sock")
    kubelet.set_pods(pod("ml", "llm-3", {"server": [("nvidia.com/gpu", ["GPU-5a1e0000-0000-4000-8000-000000000003"])]}))
    log = tmp_path / "kmsg"
    log.write_text("")
    try:
        start, receiver, _ = fast
        _, exp, _ = start(kernel_log=KernelLogConfig(str(log), poll=0.05),
                          pod_resources=PodResourcesConfig(str(kubelet.socket), interval=0.2))
        assert wait_for(lambda: exp.kernel_log.up and exp.attribution.pods_of(
            "GPU-5a1e0000-0000-4000-8000-000000000003"))
        with log.open("a") as f:
            f.write("NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n")
        got = receiver.wait_for(lambda b: _firing(b, "GpuXidCritical", gpu="3"), timeout=30)
        [alert] = _firing(got.body, "GpuXidCritical", gpu="3")
        assert alert["labels"]["xid"] == "79" and alert["labels"]["node"] == NODE
        assert alert["annotations"]["description"].endswith(" Pods on it: ml/llm-3."), alert["annotations"]
        assert one(scrape(exp), "gpu_xid_errors_total", gpu="3", xid="79", source="nvml") == 0
    finally:
        kubelet.stop()
