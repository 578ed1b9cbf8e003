"""Adversarial: Flask's default static route (/static/<path>) was left on the app, with no
credentials, serving files from `static/` under the process's working directory (the app's import
name is not a module, so Flask roots it there). Vigil has no static assets; every route but the
probes and /metrics needs credentials, so that route must not exist."""

from __future__ import annotations

from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app

OPEN = {"/healthz", "/readyz", "/metrics"}


def test_no_file_is_served_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.txt").write_text("not for anyone")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIGIL_ADV2_TOKEN", "t")
    config = parse_config({"auth": {"bearer_token_env": "VIGIL_ADV2_TOKEN"}, "ledger": {"path": str(tmp_path / "l.db")},
                           "safety": {"dry_run": True}}, "adv2.yaml")
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    try:
        app = create_app(config, ledger, Engine(config, ledger, None, metrics), metrics)
        r = app.test_client().get("/static/secret.txt")
        assert r.status_code == 404 and r.get_json()["error"] == "not_found", r.get_data(as_text=True)
        http = app.test_client()
        for rule in app.url_map.iter_rules():
            if rule.rule in OPEN:
                continue
            path = rule.rule.replace("<int:incident_id>", "1").replace("<any(approve, deny):verb>", "approve")
            for method in sorted(rule.methods - {"OPTIONS"}):
                assert http.open(path, method=method).status_code == 401, f"{method} {path} without credentials"
    finally:
        ledger.close()
