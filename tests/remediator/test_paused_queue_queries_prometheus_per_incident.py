"""Adversarial: every re-decision of a waiting incident runs its rule's guard query against
Prometheus, synchronously in the engine loop, even while remediation is paused (the guard cannot
matter: the pause rail stops it first).

`Engine._decide` computes `guard=self._guard(incident)` (remediator/runtime/engine.py) before `decide`
runs the rails, and `_tick` re-decides up to DUE_BATCH waiting incidents per tick (all of them, in
batches, every reconcile interval, and the head 200 on every tick where something changed). With a
storm held by a pause, that is one Prometheus round trip per waiting incident per pass, serial, on the
thread that also has to decide new alerts: at 50 ms per query a 200-incident tick spends 10 s in
Prometheus; at the query timeout, minutes. Real Engine (no cluster), SQLite, a counting Prometheus."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from remediator.config import parse_config
from remediator.domain.payload import Alert
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger

T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def prom():
    hits = {"n": 0}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self):
            hits["n"] += 1
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer()

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_a_paused_queue_does_not_query_prometheus_per_waiting_incident(tmp_path, prom):
    url, hits = prom
    config = parse_config({"prometheus": {"url": url}, "safety": {"dry_run": False},
                           "policy": {"rules": [{
                               "name": "failover", "match": ['alertname="InferenceServiceDegraded"'],
                               "actions": [{"type": "restart_pod", "params": {"pod": "{{ labels.pod }}",
                                                                               "namespace": "ml"}}],
                               "guard": {"query": 'min(probe_success{service="{{ labels.service }}"}) == 1'}}]}},
                          "adv.yaml")
    ledger = SQLiteLedger(str(tmp_path / "ledger.db"))
    now = [T0]
    engine = Engine(config, ledger, None, Metrics(), clock=lambda: now[0])
    engine.set_paused(True, T0, by="on-call", reason="storm")
    ledger.record([Alert("firing", {"alertname": "InferenceServiceDegraded", "service": f"svc-{i}", "pod": f"p-{i}",
                                    "severity": "warning"}, {}, T0 - dt.timedelta(seconds=10),
                         dt.datetime(1, 1, 1, tzinfo=dt.UTC), f"{i:016x}") for i in range(150)], T0)
    engine._tick()  # first decisions: all wait for the pause
    assert ledger.counts_by_status().get("waiting") == 150
    hits["n"] = 0
    for passes in range(1, 4):  # three reconcile passes, still paused
        now[0] = T0 + dt.timedelta(seconds=31 * passes)
        engine._tick()
    assert hits["n"] == 0, (f"{hits['n']} Prometheus guard queries in 3 passes over 150 incidents that wait "
                            "for a pause (one per incident per pass, serial in the engine loop)")
