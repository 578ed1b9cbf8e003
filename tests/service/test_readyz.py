"""/readyz (readiness) apart from /healthz (liveness): ready only while the probe loop runs."""

from __future__ import annotations

import requests

from exporters.http import serve
from exporters.service.config import parse_config
from exporters.service.exporter import build
from exporters.service.server import make_app


def test_ready_only_while_the_probe_scheduler_runs():
    exp = build(parse_config({"interval": "1s", "modules": {"tcp": {"prober": "tcp", "timeout": "1s"}},
                              "targets": [{"name": "t", "url": "tcp://127.0.0.1:9", "module": "tcp"}]}, "test"))
    httpd = serve(make_app(exp), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        before = requests.get(f"{url}/readyz", timeout=10)
        assert before.status_code == 503 and before.json()["error"] == "not_probing"
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
        exp.start()
        assert requests.get(f"{url}/readyz", timeout=10).text == "ok\n"
        exp.stop()
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 503
    finally:
        exp.stop()
        httpd.shutdown()
        httpd.server_close()
