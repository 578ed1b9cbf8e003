"""Adversarial: cross-site requests riding a browser's cached credentials. The status page asks the
browser for Basic credentials (a person with the admin role signs in there); afterwards any web
page that person opens can submit a plain HTML form to POST /api/breaker/reset, which needs no
body: the browser sends the cached Basic credentials along, and the circuit breaker closed in the
middle of a storm. A state-changing request that a browser marks as cross-site (Origin of another
host, or Sec-Fetch-Site: cross-site / same-site) is refused with 403 and a JSON body; the CLI and
curl (no such headers) and the page's own origin are unaffected. Real app, ledger and engine."""

from __future__ import annotations

import base64
import datetime as dt
import os

import pytest

from remediator.config import parse_config
from remediator.runtime.engine import BREAKER_KEY, Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.store.views import ts
from remediator.web.app import create_app

BASIC = "Basic " + base64.b64encode(b"oncall:adv-password-0123").decode()


@pytest.fixture
def app(tmp_path):
    os.environ["VIGIL_ADV_ADMIN_PASSWORD"] = "adv-password-0123"
    config = parse_config({"ledger": {"path": str(tmp_path / "l.db")}, "safety": {"dry_run": True},
                           "auth": {"credentials": [{"name": "oncall", "roles": ["admin"], "basic_auth": {
                               "username": "oncall", "password_env": "VIGIL_ADV_ADMIN_PASSWORD"}}]}}, "adv.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, None, metrics)
    flask_app = create_app(config, ledger, engine, metrics)
    ledger.set_state(BREAKER_KEY, ts(dt.datetime.now(dt.UTC)))  # a storm opened the breaker
    yield flask_app.test_client(), ledger
    ledger.close()


CROSS_SITE = [
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
     "Content-Type": "application/x-www-form-urlencoded"},
    {"Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "null"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_form_cannot_reset_the_breaker(app, headers):
    client, ledger = app
    r = client.post("/api/breaker/reset", headers={"Authorization": BASIC, **headers}, data="x=1")
    assert r.status_code == 403, r.get_data(as_text=True)
    assert r.get_json()["error"] == "cross_site_request"
    assert ledger.get_state(BREAKER_KEY) is not None, "the breaker was closed by a cross-site request"


def test_a_cross_site_pause_change_is_refused_too(app):
    client, _ = app
    r = client.post("/api/pause", json={"paused": True}, headers={"Authorization": BASIC,
                                                                   "Origin": "https://evil.example"})
    assert r.status_code == 403


@pytest.mark.parametrize("headers", [{}, {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
                                     {"Sec-Fetch-Site": "none"}, {"Origin": "http://localhost"}])
def test_the_cli_and_the_pages_own_origin_still_can(app, headers):
    client, ledger = app
    r = client.post("/api/breaker/reset", headers={"Authorization": BASIC, **headers})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert ledger.get_state(BREAKER_KEY) is None


def test_reading_from_another_origin_is_not_refused(app):
    client, _ = app
    r = client.get("/api/state", headers={"Authorization": BASIC, "Origin": "https://evil.example"})
    assert r.status_code == 200
