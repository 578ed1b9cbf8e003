"""Adversarial: the pause reason is free text from an admin's JSON body. Flask's JSON reader takes
a lone surrogate escape ("\\ud800"), which is not Unicode text: the pause was stored, and from then
on the status page (which shows the reason) answered 500 to everyone until someone resumed. The
reason must be text that UTF-8 can carry: anything else is a 400 naming it, and nothing changes.
Real app, ledger and engine."""

from __future__ import annotations

import pytest

from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app


@pytest.fixture
def client(tmp_path):
    config = parse_config({"ledger": {"path": str(tmp_path / "l.db")}, "safety": {"dry_run": True}}, "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, None, metrics)
    yield create_app(config, ledger, engine, metrics, insecure_no_auth=True).test_client()
    ledger.close()


@pytest.mark.parametrize("raw", [b'{"paused": true, "reason": "\\ud800 storm"}',
                                 b'{"paused": true, "reason": "storm \\udfff"}',
                                 b'{"paused": true, "reason": "\\udc00\\ud800"}'])
def test_a_reason_that_is_not_text_is_a_400_and_nothing_is_paused(client, raw):
    r = client.post("/api/pause", data=raw, content_type="application/json")
    assert r.status_code == 400, r.get_data(as_text=True)
    assert "reason" in r.get_json()["detail"]
    assert client.get("/api/pause").get_json()["paused"] is False
    assert client.get("/").status_code == 200


def test_any_real_text_is_still_a_reason(client):
    r = client.post("/api/pause", json={"paused": True, "reason": "GPU storm \U0001F525 — 夜間"})
    assert r.status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "夜間" in page.get_data(as_text=True)
