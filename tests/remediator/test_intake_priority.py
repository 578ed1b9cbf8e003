"""Intake before decisions: while a webhook is in flight the engine holds off between decisions
(so a storm's decisions do not slow its own intake), but only for `max_wait` at a time, so a
steady stream of webhooks slows the engine and never stops it."""

from __future__ import annotations

import threading

from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.intake import IntakeGate
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app
from tests.k8s.controlplane import wait_until

from .payloads import alert, body, xid_labels

TOKEN = "t"


def _engine(tmp_path, monkeypatch, gate: IntakeGate):
    monkeypatch.setenv("VIGIL_TEST_TOKEN", TOKEN)
    config = parse_config({"auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
                           "safety": {"dry_run": True}}, "test.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, None, metrics, intake=gate)
    return ledger, engine, create_app(config, ledger, engine, metrics).test_client()


def _post(http, node: str) -> None:
    r = http.post("/webhook/alertmanager", json=body(alert(xid_labels(node))),
                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.data


def test_decisions_wait_while_a_webhook_is_in_flight(tmp_path, monkeypatch):
    gate = IntakeGate(max_wait=3600)  # longer than the test: only the end of intake lets the engine go on
    ledger, engine, http = _engine(tmp_path, monkeypatch, gate)
    try:
        with gate.busy():  # a webhook being read and recorded
            engine.start()
            _post(http, "n1")
            wait_until(lambda: gate.waiting == 1, 30, 0.01, "the engine holding off")
            assert ledger.counts_by_status() == {"pending": 1}
        wait_until(lambda: ledger.counts_by_status().get("pending", 0) == 0, 30, 0.05, "the decision after intake")
    finally:
        engine.stop()
        ledger.close()


def test_a_steady_stream_of_webhooks_never_stops_the_engine(tmp_path, monkeypatch):
    gate = IntakeGate(max_wait=0.01)
    ledger, engine, http = _engine(tmp_path, monkeypatch, gate)
    for i in range(20):
        _post(http, f"n{i}")
    engine.start()
    done = threading.Event()
    try:
        with gate.busy():  # intake never idle while the engine works
            engine.wake()
            wait_until(lambda: ledger.counts_by_status().get("pending", 0) == 0, 60, 0.05, "20 decisions")
        done.set()
    finally:
        engine.stop()
        ledger.close()
    assert done.is_set()
