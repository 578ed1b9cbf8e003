"""The HTTP surface, through a real server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from exporters.gpu.server import make_app, serve

from .conftest import make_exporter, one, parse, pick, wait_for


@pytest.fixture
def served(exporter):
    httpd = serve(make_app(exporter), "127.0.0.1", 0)
    yield f"http://127.0.0.1:{httpd.server_port}", exporter
    httpd.shutdown()
    httpd.server_close()


def test_metrics_and_healthz(served):
    url, _ = served
    r = requests.get(f"{url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert one(parse(r.text), "gpu_exporter_nvml_up") == 1
    assert requests.get(f"{url}/healthz", timeout=10).text == "ok\n"


def test_gzip_when_asked(served):
    url, _ = served
    r = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    assert r.headers["Content-Encoding"] == "gzip"
    assert b"gpu_exporter_nvml_up 1.0" in gzip.decompress(r.raw.read())


def test_simulate_xid_then_lost_as_in_the_issue(served):
    url, _ = served
    r = requests.post(f"{url}/simulate", json={"gpu": 3, "fault": "xid", "xid": 79}, timeout=10)
    assert r.status_code == 200, r.text
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        s = parse(requests.get(f"{url}/metrics", timeout=10).text)
        if one(s, "gpu_xid_errors_total", gpu="3", xid="79") == 1:
            break
    assert one(s, "gpu_xid_errors_total", gpu="3", xid="79") == 1
    assert requests.post(f"{url}/simulate", json={"gpu": 5, "fault": "lost"}, timeout=10).status_code == 200
    s = parse(requests.get(f"{url}/metrics", timeout=10).text)
    assert one(s, "gpu_accessible", gpu="5") == 0
    assert all(one(s, "gpu_accessible", gpu=str(i)) == 1 for i in (0, 1, 2, 3, 4, 6, 7))
    listed = requests.get(f"{url}/simulate", timeout=10).json()
    assert listed["faults"]["5"]["faults"] == ["lost"] and listed["faults"]["3"]["xids"] == [79]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"fault": "xid", "xid": 79}', "invalid_body"),
        (b'{"gpu": "3", "fault": "lost"}', "invalid_body"),
        (b'{"gpu": true, "fault": "lost"}', "invalid_body"),
        (b'{"gpu": 3}', "invalid_body"),
        (b'{"gpu": 3, "fault": "melt"}', "invalid_fault"),
        (b'{"gpu": 3, "fault": "xid"}', "invalid_fault"),
        (b'{"gpu": 3, "fault": "xid", "xid": "79"}', "invalid_fault"),
        (b'{"gpu": 42, "fault": "lost"}', "invalid_fault"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"fault": "sxid", "sxid": 24007}', "invalid_body"),
        (b'{"fault": "sxid", "nvswitch": 0, "sxid": 24007}', "invalid_fault"),  # no simulated kernel log here
        (b'{"gpu": 0, "fault": "sxid", "sxid": 24007}', "invalid_body"),
    ],
)
def test_bad_simulate_body_is_a_json_400(served, body, error):
    url, _ = served
    r = requests.post(f"{url}/simulate", data=body, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"] == error and r.json()["detail"]


def test_oversized_body_is_413(served):
    url, _ = served
    r = requests.post(f"{url}/simulate", data=b"x" * (65 * 1024), timeout=10)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"


def test_unknown_route_and_method(served):
    url, _ = served
    r = requests.get(f"{url}/nope", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = requests.delete(f"{url}/simulate", timeout=10)
    assert r.status_code == 405 and json.loads(r.text)["error"] == "method_not_allowed"


def test_no_fault_injection_on_the_nvml_backend(sim):
    exp = make_exporter(sim)
    exp.nvml = object.__new__(type("RealLookingBackend", (), {}))  # any backend but the simulated one
    httpd = serve(make_app(exp), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/simulate"
        r = requests.post(url, json={"gpu": 0, "fault": "lost"}, timeout=10)
        assert r.status_code == 404
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_scrape_timeout_header_bounds_a_hung_collection(clock):
    import threading
    import time

    from exporters.gpu.simulated import SimulatedNVML

    sim = SimulatedNVML(2, clock=clock)
    exp = make_exporter(sim, collect_timeout=30)
    httpd = serve(make_app(exp), "127.0.0.1", 0)
    sim.hang = threading.Event()
    try:
        started = time.monotonic()
        r = requests.get(f"http://127.0.0.1:{httpd.server_port}/metrics",
                         headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}, timeout=20)
        elapsed = time.monotonic() - started
        assert r.status_code == 200
        assert elapsed < 10, "the collection bound follows the scrape timeout header, not the 30 s default"
        assert one(parse(r.text), "gpu_exporter_last_collect_success") == 0
    finally:
        sim.hang.set()
        httpd.shutdown()
        httpd.server_close()


def test_simulate_an_sxid_through_http(tmp_path):
    from exporters.gpu.exporter import load_backend
    from exporters.gpu.kernel_log import KernelLogConfig

    log = tmp_path / "kmsg"
    exp = make_exporter(load_backend("simulated", 8, str(log)), kernel_log=KernelLogConfig(str(log), poll=0.05))
    httpd = serve(make_app(exp), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        assert wait_for(lambda: exp.kernel_log.up)
        r = requests.post(f"{url}/simulate", json={"fault": "sxid", "nvswitch": 1, "sxid": 24007}, timeout=10)
        assert r.status_code == 200, r.text
        for body, error in (({"fault": "sxid", "nvswitch": 9, "sxid": 24007}, "invalid_fault"),
                            ({"fault": "sxid", "nvswitch": 1, "sxid": "x"}, "invalid_fault")):
            r = requests.post(f"{url}/simulate", json=body, timeout=10)
            assert r.status_code == 400 and r.json()["error"] == error, r.text
        assert wait_for(lambda: pick(parse(requests.get(f"{url}/metrics", timeout=10).text),
                                     "gpu_nvswitch_sxid_errors_total", device="nvswitch1", severity="fatal"))
        assert "nvidia-nvswitch1: SXid (PCI:0000:06:00.0): 24007, Fatal, Link 28 " in log.read_text()
    finally:
        httpd.shutdown()
        httpd.server_close()
        exp.stop()
