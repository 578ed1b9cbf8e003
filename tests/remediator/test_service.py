"""The remediator as a process and as an HTTP service: crash recovery, auth, bad input, explain."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remediator.config import parse_config
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app
from tests.gpu.conftest import free_port
from tests.k8s.controlplane import add_gpu_nodes, wait_until

from .payloads import alert, body, xid_labels

TOKEN = "svc-token-abcdef"


def _serve(config_path, port: int) -> subprocess.Popen:
    env = {**os.environ, "VIGIL_TEST_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "remediator.cli", "serve", "--config", str(config_path),
                             "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except requests.ConnectionError as exc:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read()) from exc
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("remediator did not start")


@pytest.mark.k8s
def test_kill_9_between_the_200_and_the_action_acts_exactly_once(k8s_cluster, tmp_path, unique):
    from kubernetes import client

    api = k8s_cluster.api_client()
    node = f"crash-{unique}"
    add_gpu_nodes(api, [node], pool=f"crash-{unique}")
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({
        "auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"}, "ledger": {"path": str(tmp_path / "ledger.db")},
        "kubernetes": {"kubeconfig": str(k8s_cluster.kubeconfig), "node_selector": f"vigil.io/pool=crash-{unique}"},
        "leader_election": {"name": f"crash-{unique}"},
        "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'], "min_firing": "3s",
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}}))
    port = free_port()
    proc = _serve(cfg, port)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.post(f"{url}/webhook/alertmanager", json=body(alert(xid_labels(node))), headers=headers, timeout=10)
    assert r.status_code == 200
    os.kill(proc.pid, signal.SIGKILL)  # the 200 is out; the action is not (min_firing holds it 3 s)
    proc.wait(10)
    core = client.CoreV1Api(api)
    assert not core.read_node(node).spec.unschedulable
    proc = _serve(cfg, port)
    try:
        # a restarted process is a new lease candidate: it acts once the killed one's lease expires (15 s)
        wait_until(lambda: core.read_node(node).spec.unschedulable, 60, what="cordon after restart")
        items = wait_until(lambda: [i for i in requests.get(f"{url}/api/incidents", headers=headers, timeout=10)
                                    .json()["items"] if i["status"] == "succeeded"], 30, what="incident done")
        assert len(items) == 1
        detail = requests.get(f"{url}/api/incidents/{items[0]['id']}", headers=headers, timeout=10).json()
        assert [(a["type"], a["state"]) for a in detail["actions"]] == [("cordon_node", "succeeded")]
        assert sum(a["event"] == "action:cordon_node" for a in detail["audit"]) == 1
        # more restarts and resends change nothing
        requests.post(f"{url}/webhook/alertmanager", json=body(alert(xid_labels(node))), headers=headers, timeout=10)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "msg"} <= set(line) for line in lines), "JSON logs"
    assert proc.returncode == 0


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app with no cluster (dry-run), for HTTP-level tests."""
    monkeypatch.setenv("VIGIL_TEST_TOKEN", TOKEN)
    pw = tmp_path / "pw"
    pw.write_text("am-password")
    config = parse_config({"auth": {"bearer_token_env": "VIGIL_TEST_TOKEN",
                                    "basic_auth": {"username": "alertmanager", "password_file": str(pw)}},
                           "ledger": {"path": str(tmp_path / "l.db")}, "safety": {"dry_run": True},
                           "server": {"max_body_bytes": 64 * 1024}})
    ledger = SQLiteLedger(config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    engine = Engine(config, ledger, None, metrics)
    yield create_app(config, ledger, engine, metrics).test_client()
    ledger.close()


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_no_or_wrong_credentials_are_401(app):
    payload = body(alert(xid_labels("n1")))
    assert app.post("/webhook/alertmanager", json=payload).status_code == 401
    r = app.post("/webhook/alertmanager", json=payload, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.get_json()["error"] == "unauthorized"
    assert app.get("/api/incidents").status_code == 401
    good = base64.b64encode(b"alertmanager:am-password").decode()
    bad = base64.b64encode(b"alertmanager:guess").decode()
    assert app.post("/webhook/alertmanager", json=payload, headers={"Authorization": f"Basic {good}"}).status_code \
        == 200
    assert app.post("/webhook/alertmanager", json=payload, headers={"Authorization": f"Basic {bad}"}).status_code \
        == 401
    assert app.post("/webhook/alertmanager", json=payload, headers={"Authorization": "Basic !!!"}).status_code == 401


def test_invalid_json_and_schema_are_400_json(app):
    r = app.post("/webhook/alertmanager", data=b"{nope", headers=BEARER)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_json" and r.get_json()["detail"]
    r = app.post("/webhook/alertmanager", json={"version": "4", "alerts": "x", "status": "firing"}, headers=BEARER)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_payload"


def test_oversized_body_is_413_json(app):
    r = app.post("/webhook/alertmanager", data=b" " * (65 * 1024), headers=BEARER)
    assert r.status_code == 413 and "error" in r.get_json()


def test_unknown_route_and_method_are_json(app):
    assert app.get("/nope").get_json()["error"] == "not_found"
    r = app.get("/webhook/alertmanager", headers=BEARER)
    assert r.status_code == 405 and r.get_json()["error"] == "method_not_allowed"
    assert r.headers["Allow"] == "OPTIONS, POST"
    assert app.options("/webhook/alertmanager").status_code == 200


def test_every_webhook_answer_is_json_and_counted_by_code(app):
    """The webhook runs in front of Flask: its refusals are its own, and each one is counted."""
    path = "/webhook/alertmanager"
    answers = [app.post(path, json=body(alert(xid_labels("n1")))),  # no credentials
               app.put(path, json=body(alert(xid_labels("n1"))), headers=BEARER),
               app.post(path, data=b" " * (65 * 1024), headers=BEARER),
               app.post(path, data=b"{", headers=BEARER),
               app.post(path, json=body(alert(xid_labels("n1"))), headers={**BEARER, "Origin": "https://evil.example"}),
               app.post(f"{path}?receiver=x", json=body(alert(xid_labels("n2"))), headers=BEARER),
               app.post("/webhook//alertmanager", json=body(alert(xid_labels("n3"))), headers=BEARER)]
    assert [r.status_code for r in answers] == [401, 405, 413, 400, 403, 200, 200]
    assert all(r.mimetype == "application/json" and r.get_json() for r in answers)
    assert answers[0].headers["WWW-Authenticate"].startswith("Basic")
    text = app.get("/metrics").get_data(as_text=True)
    for code, n in ((401, 1), (405, 1), (413, 1), (400, 1), (403, 1), (200, 2)):
        assert f'vigil_webhook_requests_total{{code="{code}"}} {n}.0' in text, code
    assert app.get("/healthz").status_code == 200  # every other path is still Flask's


def test_incidents_api_filters_and_paginates(app):
    for i in range(5):
        app.post("/webhook/alertmanager", json=body(alert(xid_labels(f"n{i}"))), headers=BEARER)
    app.post("/webhook/alertmanager", json=body(alert({"alertname": "Other", "x": "1"})), headers=BEARER)
    page = app.get("/api/incidents?alertname=GpuXidCritical&limit=2", headers=BEARER).get_json()
    assert page["total"] == 5 and len(page["items"]) == 2 and page["next_offset"] == 2
    last = app.get("/api/incidents?alertname=GpuXidCritical&limit=2&offset=4", headers=BEARER).get_json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    assert app.get("/api/incidents?limit=0", headers=BEARER).status_code == 400
    assert app.get("/api/incidents?limit=x", headers=BEARER).status_code == 400
    assert app.get("/api/incidents/99999", headers=BEARER).status_code == 404


def test_health_readiness_and_metrics(app):
    assert app.get("/healthz").status_code == 200
    ready = app.get("/readyz").get_json()
    assert ready["checks"]["ledger"] == "ok"
    payload = body(alert(xid_labels("n1")))  # one episode, sent twice
    app.post("/webhook/alertmanager", json=payload, headers=BEARER)
    app.post("/webhook/alertmanager", json=payload, headers=BEARER)
    text = app.get("/metrics").get_data(as_text=True)
    for name in ("vigil_incidents{status=\"pending\"}", "vigil_dedupe_hits_total 1.0", "vigil_breaker_open",
                 "vigil_actions_total", "vigil_blocked_total", "vigil_action_delay_seconds",
                 "vigil_disruption_budget_nodes_in_use", 'vigil_webhook_requests_total{code="200"} 2.0'):
        assert name in text, name


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                     max_size=4), max_leaves=12)
alert_like = st.fixed_dictionaries({}, optional={
    "status": st.sampled_from(["firing", "resolved", "x"]) | json_values,
    "labels": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3) | json_values,
    "annotations": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2) | json_values,
    "startsAt": st.sampled_from(["2026-11-22T12:00:00Z", "2026-11-22T12:00:00.123456789+02:00", "bad"]) | json_values,
    "endsAt": st.sampled_from(["0001-01-01T00:00:00Z", ""]) | json_values,
    "fingerprint": st.sampled_from(["abc123", "zz"]) | json_values,
})
payload_like = st.fixed_dictionaries({}, optional={
    "version": st.sampled_from(["4", "3", 4]) | json_values,
    "status": st.sampled_from(["firing", "resolved"]) | json_values,
    "alerts": st.lists(alert_like, max_size=3) | json_values,
    "truncatedAlerts": st.integers(-2, 3) | json_values,
    "receiver": st.text(max_size=5) | json_values,
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=payload_like | json_values, raw=st.binary(max_size=64))
def test_fuzzed_webhook_bodies_get_only_2xx_or_4xx_with_json(app, data, raw):
    for content in (json.dumps(data).encode(), raw):
        r = app.post("/webhook/alertmanager", data=content, headers=BEARER)
        assert r.status_code in (200, 400, 413), (r.status_code, content[:200])
        assert isinstance(r.get_json(), dict)


def test_explain_prints_the_decision_without_acting(tmp_path):
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": {"path": str(tmp_path / "none.db")},
        "policy": {"rules": [{"name": "xid", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]},
                             {"name": "lost", "match": ['alertname="GpuLost"'],
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.host }}"}}]}]}}))
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(body(alert(xid_labels("gpu-node-7")), alert({"alertname": "GpuLost", "gpu": "1"}))))
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "explain", "--config", str(cfg), str(payload)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "rule 'xid' matches" in r.stdout and "cordon_node(gpu-node-7)" in r.stdout and "=> act" in r.stdout
    assert "template_error" in r.stdout and "host" in r.stdout
    assert not (tmp_path / "none.db").exists(), "explain writes nothing"
    bad = subprocess.run([sys.executable, "-m", "remediator.cli", "explain", "--config", str(cfg), str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "invalid_json" in bad.stderr and "Traceback" not in bad.stderr
