"""Adversarial: the cross-site check parsed the Origin header with urlsplit, which raises
ValueError on a malformed bracketed host ("http://[::1"); every POST route then answered 500
(internal_error) instead of refusing the request with a 403 JSON body."""

from __future__ import annotations

import pytest

from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app

from .payloads import alert, body, xid_labels

TOKEN = "adv2"


@pytest.fixture
def http(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_ADV2_TOKEN", TOKEN)
    config = parse_config({"auth": {"bearer_token_env": "VIGIL_ADV2_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
                           "safety": {"dry_run": True}}, "adv2.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    yield create_app(config, ledger, Engine(config, ledger, None, metrics), metrics).test_client()
    ledger.close()


@pytest.mark.parametrize("path,payload", [("/webhook/alertmanager", body(alert(xid_labels("n1")))),
                                          ("/api/pause", {"paused": True, "reason": "x"}),
                                          ("/api/breaker/reset", {})])
@pytest.mark.parametrize("origin", ["http://[::1", "http://[", "https://[not-an-ip]x"])
def test_a_malformed_origin_is_refused_with_json(http, path, payload, origin):
    r = http.post(path, json=payload, headers={"Authorization": f"Bearer {TOKEN}", "Origin": origin})
    assert r.status_code == 403, r.get_data(as_text=True)
    assert r.get_json()["error"] == "cross_site_request"


def test_the_same_origin_still_passes(http):
    r = http.post("/api/pause", json={"paused": False},
                  headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://localhost"})
    assert r.status_code == 200, r.get_data(as_text=True)
