"""/readyz (readiness) apart from /healthz (liveness): not ready while every scrape slot is held."""

from __future__ import annotations

import threading

import requests

from exporters.gpu import server
from exporters.http import serve
from tests.k8s.controlplane import wait_until

from .conftest import make_exporter


def test_not_ready_while_hung_collections_hold_every_scrape_slot(sim, monkeypatch):
    monkeypatch.setattr(server, "MAX_CONCURRENT_SCRAPES", 1)
    exp = make_exporter(sim, collect_timeout=30.0)
    httpd = serve(server.make_app(exp), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{httpd.server_port}"
    sim.hang = threading.Event()
    scrape = threading.Thread(target=lambda: requests.get(f"{url}/metrics", timeout=60), daemon=True)
    try:
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
        scrape.start()
        wait_until(lambda: requests.get(f"{url}/readyz", timeout=10).status_code == 503, 20, what="not ready")
        r = requests.get(f"{url}/readyz", timeout=10)
        assert r.json()["error"] == "scrapes_saturated"
        assert requests.get(f"{url}/healthz", timeout=10).text == "ok\n"  # alive all the same
        sim.hang.set()
        scrape.join(60)
        wait_until(lambda: requests.get(f"{url}/readyz", timeout=10).status_code == 200, 20, what="ready again")
    finally:
        sim.hang.set()
        exp.watcher.stop()
        httpd.shutdown()
        httpd.server_close()
