"""Adversarial: numbers in the URL that the route's type allows but SQLite cannot hold. Flask's
int converter takes any digit string; SQLite integers are 64-bit. Each must be a 4xx/404 with a
JSON body (or an empty page), never a 500."""

from __future__ import annotations

import pytest

from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app

from .payloads import alert, body, xid_labels

HUGE = "9" * 30
INT64_PLUS_ONE = str(2**63)


@pytest.fixture
def http(tmp_path):
    config = parse_config({"ledger": {"path": str(tmp_path / "l.db")}, "safety": {"dry_run": True}}, "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, None, metrics)
    app = create_app(config, ledger, engine, metrics, insecure_no_auth=True)
    client = app.test_client()
    assert client.post("/webhook/alertmanager", json=body(alert(xid_labels("n1")))).status_code == 200
    yield client
    ledger.close()


@pytest.mark.parametrize("incident_id", [HUGE, INT64_PLUS_ONE])
def test_an_incident_id_beyond_64_bits_is_not_found(http, incident_id):
    r = http.get(f"/api/incidents/{incident_id}")
    assert r.status_code == 404, r.get_data(as_text=True)
    assert r.get_json()["error"] == "not_found"


@pytest.mark.parametrize("offset", [HUGE, INT64_PLUS_ONE])
def test_an_offset_beyond_64_bits_is_an_empty_page(http, offset):
    r = http.get("/api/incidents", query_string={"offset": offset})
    assert r.status_code == 200, r.get_data(as_text=True)
    page = r.get_json()
    assert page["items"] == [] and page["total"] == 1 and page["next_offset"] is None


def test_the_largest_64_bit_id_is_still_asked_for(http):
    r = http.get(f"/api/incidents/{2**63 - 1}")
    assert r.status_code == 404
    assert http.get("/api/incidents/1").get_json()["id"] == 1
