"""The status page and roles in process (no cluster: dry-run): what alerts carry is escaped, the
single-credential form keeps intake and admin, and roles are enforced per route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app

from .payloads import alert, body

EVIL = '<script>alert("x")</script>'


@pytest.fixture
def make_app(tmp_path, monkeypatch) -> Iterator:
    made = []

    def make(auth: dict):
        monkeypatch.setenv("VIGIL_SP_TOKEN", "legacy-token")
        monkeypatch.setenv("VIGIL_SP_READ", "read-token")
        cfg = parse_config({"auth": auth, "ledger": {"path": str(tmp_path / f"l{len(made)}.db")},
                            "safety": {"dry_run": True},
                            "ui": {"grafana_url": "https://grafana.example.invalid/d/vigil-remediation"},
                            "policy": {"rules": [{"name": "r", "match": ['alertname="GpuXidCritical"'],
                                                  "actions": [{"type": "cordon_node",
                                                               "params": {"node": "{{ labels.node }}"}}]}]}},
                           "t.yaml")
        ledger = SQLiteLedger(cfg.ledger_path)
        metrics = Metrics(ledger.counts_by_status)
        engine = Engine(cfg, ledger, None, metrics)
        made.append((engine, ledger))
        return create_app(cfg, ledger, engine, metrics).test_client(), engine
    yield make
    for engine, ledger in made:  # never started: the tests decide by hand
        engine._pool.shutdown(wait=True)
        ledger.close()


def test_the_single_credential_form_is_intake_and_admin(make_app):
    http, engine = make_app({"bearer_token_env": "VIGIL_SP_TOKEN"})
    h = {"Authorization": "Bearer legacy-token"}
    assert http.post("/webhook/alertmanager", json=body(alert({"alertname": "X"})), headers=h).status_code == 200
    assert http.get("/api/incidents", headers=h).status_code == 200
    r = http.post("/api/pause", json={"paused": True, "reason": "r"}, headers=h)
    assert r.status_code == 200 and r.get_json()["by"].startswith("default@")
    assert engine.config.auth.legacy


def test_label_values_are_escaped_on_the_page(make_app):
    http, engine = make_app({"credentials": [
        {"name": "am", "roles": ["intake"], "bearer_token_env": "VIGIL_SP_TOKEN"},
        {"name": "viewer", "roles": ["read"], "bearer_token_env": "VIGIL_SP_READ"}]})
    labels = {"alertname": "GpuXidCritical", "node": EVIL}
    assert http.post("/webhook/alertmanager", json=body(alert(labels)),
                     headers={"Authorization": "Bearer legacy-token"}).status_code == 200
    (inc,) = engine.ledger.due(engine.clock())
    engine.decide_and_record(inc)
    r = http.get("/", headers={"Authorization": "Bearer read-token"})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and r.content_type.startswith("text/html")
    assert EVIL not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "dry-run" in page and 'href="https://grafana.example.invalid/d/vigil-remediation"' in page
    assert "unknown: no cluster configured" in page
    status = http.get("/api/status", headers={"Authorization": "Bearer read-token"}).get_json()
    assert status["incidents"][0]["labels"]["node"] == EVIL and status["dry_run"] is True
    assert http.get("/", headers={"Authorization": "Bearer legacy-token"}).status_code == 403  # intake only
    r = http.get("/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(("auth", "message"), [
    ({"credentials": [{"name": "a", "roles": ["root"], "bearer_token_env": "VIGIL_SP_TOKEN"}]}, "key 'roles'"),
    ({"credentials": [{"name": "a", "roles": ["read"]}]}, "needs bearer_token_file, bearer_token_env or basic_auth"),
    ({"credentials": [{"name": "a", "roles": ["read"], "bearer_token_env": "VIGIL_SP_TOKEN"},
                      {"name": "a", "roles": ["admin"], "bearer_token_env": "VIGIL_SP_READ"}]}, "'a' used twice"),
    ({"bearer_token_env": "VIGIL_SP_TOKEN", "credentials": []}, "not both"),
])
def test_bad_auth_sections(make_app, auth, message):
    from remediator.config import ConfigError

    with pytest.raises(ConfigError) as err:
        make_app(auth)
    assert message in str(err.value)


def test_the_page_names_the_leader_shows_dry_run_reasons_and_unverifiable(make_app):
    """Without leader election the leader is this process ("local"), never an object's repr; an incident
    whose check after acting stayed unknown says `unverifiable` beside its status."""
    http, engine = make_app({"credentials": [
        {"name": "am", "roles": ["intake"], "bearer_token_env": "VIGIL_SP_TOKEN"},
        {"name": "viewer", "roles": ["read"], "bearer_token_env": "VIGIL_SP_READ"}]})
    read = {"Authorization": "Bearer read-token"}
    assert http.post("/webhook/alertmanager", json=body(alert({"alertname": "GpuXidCritical", "node": "n1"})),
                     headers={"Authorization": "Bearer legacy-token"}).status_code == 200
    (inc,) = engine.ledger.due(engine.clock())
    engine.decide_and_record(inc)
    (listed,) = http.get("/api/incidents", headers=read).get_json()["items"]
    engine.ledger.set_verification(listed["id"], "unverifiable", "Prometheus did not answer", engine.clock())
    status = http.get("/api/status", headers=read).get_json()
    assert status["leader"] == "local"
    page = http.get("/", headers=read).get_data(as_text=True)
    assert '<span id="leader">local</span>' in page and "object at 0x" not in page
    assert 'id="dry-run" data-armed="false"' in page and 'id="armed"' not in page
    assert 'data-verification="unverifiable"' in page
    assert '<span class="status-unverifiable">unverifiable</span>' in page
    assert "<th>reason</th>" in page and f'<td class="reason">{listed["reason"] or "-"}</td>' in page
    r = http.get("/api/incidents?status=nonsense", headers=read)
    assert r.status_code == 400 and "is not one of pending, deferred, waiting, acting" in r.get_json()["detail"]


def test_admins_get_a_resume_button_that_works_without_javascript(make_app, monkeypatch):
    monkeypatch.setenv("VIGIL_SP_ADMIN", "admin-token")
    http, engine = make_app({"credentials": [
        {"name": "viewer", "roles": ["read"], "bearer_token_env": "VIGIL_SP_READ"},
        {"name": "oncall", "roles": ["admin"], "bearer_token_env": "VIGIL_SP_ADMIN"}]})
    read, admin = {"Authorization": "Bearer read-token"}, {"Authorization": "Bearer admin-token"}
    assert http.post("/api/pause", json={"paused": True, "reason": "maintenance"}, headers=admin).status_code == 200
    assert '<form id="resume" method="post" action="/resume">' in http.get("/", headers=admin).get_data(as_text=True)
    page = http.get("/", headers=read).get_data(as_text=True)
    assert 'id="resume-hint"' in page and '<form id="resume"' not in page  # the hint for everyone, the button not
    assert http.post("/resume", headers=read).status_code == 403
    other = {**admin, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert http.post("/resume", headers=other).status_code == 403  # a form on another site
    assert http.get("/api/state", headers=read).get_json()["paused"] is True
    r = http.post("/resume", headers={**admin, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/")
    assert http.get("/api/state", headers=read).get_json()["paused"] is False
    assert engine.pause().paused is False
