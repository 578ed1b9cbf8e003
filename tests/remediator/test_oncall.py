"""On call, against a real `remediator serve` acting on the session cluster: roles, the CLI
subcommands, pause with reason and expiry, the start-up log, notifications through a real
Alertmanager, and the status page in headless Chromium checked against the API."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kubernetes import client
from markupsafe import escape

from tests.k8s.controlplane import wait_until
from tests.stack import tool

from . import oncall_stack as oc
from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s
SCREENSHOT_DIR = Path(".local/test-artifacts")


@pytest.fixture(scope="module")
def live(k8s_cluster, tmp_path_factory) -> Iterator[oc.Live]:
    import uuid

    live = oc.start(tmp_path_factory.mktemp("oncall"), k8s_cluster, f"oncall-{uuid.uuid4().hex[:6]}")
    try:
        yield live
    finally:
        oc.stop(live)


def post_xid(live: oc.Live, node: str, who: str = "alertmanager") -> requests.Response:
    return requests.post(f"{live.url}/webhook/alertmanager", json=body(alert(xid_labels(node))),
                         headers=live.headers(who), timeout=10)


def incident_for(live: oc.Live, node: str, *statuses: str) -> dict:
    def find():
        items = oc.get(live, "/api/incidents?limit=500")["items"]
        hit = [i for i in items if i["labels"].get("node") == node and i["status"] in statuses]
        return hit[0] if hit else None
    return wait_until(find, 60, what=f"an incident for {node} in {statuses}")


def test_roles_separate_intake_read_and_admin(live):
    u = live.url
    r = requests.get(f"{u}/api/incidents", timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and "Basic" in r.headers["WWW-Authenticate"]
    r = requests.get(f"{u}/api/incidents", headers=live.headers("alertmanager"), timeout=10)
    assert r.status_code == 403 and "lacks the 'read' role" in r.json()["detail"]
    assert requests.get(f"{u}/api/incidents", headers=live.headers("viewer"), timeout=10).status_code == 200
    assert requests.get(f"{u}/api/incidents", auth=("viewer", oc.VIEWER_PASSWORD), timeout=10).status_code == 200
    assert requests.get(f"{u}/api/incidents", auth=("viewer", "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{u}/api/incidents", headers=live.headers("oncall"), timeout=10).status_code == 200  # admin
    for who in ("viewer", "alertmanager"):
        r = requests.post(f"{u}/api/pause", json={"paused": True, "reason": "x"}, headers=live.headers(who), timeout=10)
        assert r.status_code == 403, who
        assert requests.post(f"{u}/api/breaker/reset", headers=live.headers(who), timeout=10).status_code == 403
    for who in ("viewer", "oncall"):
        assert post_xid(live, "not-a-node", who).status_code == 403, who
    assert oc.get(live, "/api/state")["paused"] is False


def test_cli_against_a_running_remediator(live):
    node = live.nodes[0]
    assert post_xid(live, node).status_code == 200
    inc = incident_for(live, node, "succeeded")
    assert client.CoreV1Api(live.api).read_node(node).spec.unschedulable

    r = live.cli("incidents", "--status", "succeeded", who="viewer")
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^{inc['id']}\s+succeeded\s+-\s+GpuXidCritical\s+gpu-xid-node-fatal", r.stdout, re.M), r.stdout
    r = live.cli("incidents", "--json", who="viewer")
    assert r.returncode == 0 and '"items"' in r.stdout
    r = live.cli("show", str(inc["id"]), who="viewer")
    assert r.returncode == 0, r.stderr
    assert f"incident {inc['id']}: GpuXidCritical succeeded" in r.stdout
    assert f"cordon_node({node}) succeeded" in r.stdout
    assert "trace:" in r.stdout and "act" in r.stdout

    r = live.cli("pause", "--reason", "node maintenance in zone-a", "--for", "2h")
    assert r.returncode == 0, r.stderr
    assert "paused by oncall@127.0.0.1: node maintenance in zone-a" in r.stdout
    state = oc.get(live, "/api/state")
    assert state["paused"] is True and state["pause"]["reason"] == "node maintenance in zone-a"
    assert state["pause"]["by"] == "oncall@127.0.0.1" and state["pause"]["until"]
    r = live.cli("state", who="viewer")
    assert r.returncode == 0 and "PAUSED by oncall@127.0.0.1: node maintenance in zone-a" in r.stdout

    # While paused: the next fault is recorded and waits in the queue, nothing is changed.
    assert post_xid(live, live.nodes[1]).status_code == 200
    held = incident_for(live, live.nodes[1], "waiting")
    assert held["reason"] == "paused"
    assert not client.CoreV1Api(live.api).read_node(live.nodes[1]).spec.unschedulable
    r = live.cli("queue", who="viewer")
    assert r.returncode == 0, r.stderr
    assert re.search(rf"^1\s+{held['id']}\s+GpuXidCritical\s+{live.nodes[1]}\s+\S+\s+paused\s", r.stdout, re.M), \
        r.stdout
    assert "(1 waiting)" in r.stdout

    # A second process on the same ledger says at start that remediation is paused, why and until when.
    proc, _ = live.spawn_serve("remediator-2")
    proc.stop()
    log = proc.log.read_text()
    assert re.search(r"WARNING .*remediation is PAUSED by oncall@127\.0\.0\.1: node maintenance in zone-a "
                     r"\(until \d{4}-\d\d-\d\dT", log), log
    assert re.search(r"WARNING .*ARMED: Vigil acts on the cluster \(safety\.dry_run: false\)", log), log

    assert live.cli("resume").returncode == 0
    assert oc.get(live, "/api/state")["paused"] is False
    incident_for(live, live.nodes[1], "succeeded")  # the held fault goes on after the resume
    assert client.CoreV1Api(live.api).read_node(live.nodes[1]).spec.unschedulable
    assert live.cli("queue", who="viewer").stdout.strip() == "nothing waits"
    # the operator returns it (an uncordon Vigil does not own): the budget is free again for the tests after
    client.CoreV1Api(live.api).patch_node(live.nodes[1], {"spec": {"unschedulable": False}})
    r = live.cli("breaker-reset")
    assert r.returncode == 0 and "already closed" in r.stdout

    audit = oc.get(live, "/api/audit?limit=100")["items"]
    events = [(a["event"], a["detail"].get("by")) for a in audit]
    assert ("pause", "oncall@127.0.0.1") in events and ("unpause", "oncall@127.0.0.1") in events
    assert next(a for a in audit if a["event"] == "pause")["detail"]["reason"] == "node maintenance in zone-a"


@pytest.mark.parametrize(("args", "who", "env", "message"), [
    (("pause", "--reason", "x"), "viewer", None, "HTTP 403: forbidden: credential 'viewer' lacks the 'admin' role"),
    (("incidents",), "alertmanager", None, "HTTP 403"),
    (("incidents",), None, {"VIGIL_TOKEN": "wrong"}, "HTTP 401: unauthorized"),
    (("incidents",), None, None, "HTTP 401: unauthorized: missing or wrong credentials (no token was sent: set "
                                 "VIGIL_TOKEN, VIGIL_TOKEN_FILE or --token-file"),
    (("incidents", "--status", "nonsense"), "viewer", None,
     "HTTP 400: invalid_query: status 'nonsense' is not one of pending, deferred, waiting, acting, succeeded"),
    (("show", "999999"), "viewer", None, "HTTP 404: not_found: no incident 999999"),
    (("pause", "--reason", "x", "--for", "1.5h"), "oncall", None, "HTTP 400: invalid_body: for: not a valid duration"),
    (("pause", "--reason", "  "), "oncall", None, "--reason must say why"),
    (("incidents", "--url", "http://127.0.0.1:1"), "viewer", None, "cannot reach the remediator at http://127.0.0.1:1"),
    (("incidents", "--token-file", "/nonexistent/token"), None, None, "--token-file /nonexistent/token"),
    (("incidents", "--url", "file:///etc/passwd"), "viewer", None, "--url: expected http://"),
])
def test_cli_errors_are_one_line_and_exit_2(live, args, who, env, message):
    r = live.cli(*args, who=who, env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert oc.get(live, "/api/state")["paused"] is False


def test_a_reader_that_leaves_early_gets_no_traceback(live):
    """`remediator incidents | head -1`: the pipe closes before the CLI writes; it exits quietly."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    p = subprocess.Popen([sys.executable, "-m", "remediator.cli", "incidents", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**base, "VIGIL_URL": live.url,
                                                      "VIGIL_TOKEN_FILE": str(live.token_file("viewer"))})
    p.stdout.close()  # the reader is gone before the answer arrives
    _, err = p.communicate(timeout=60)
    assert p.returncode == 141 and b"Traceback" not in err, err


def test_a_pause_with_an_expiry_ends_by_itself(live):
    r = live.cli("pause", "--reason", "short", "--for", "1s")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: oc.get(live, "/api/state")["paused"] is False, 30, what="the pause to expire")
    audit = oc.get(live, "/api/audit?limit=20")["items"]
    assert any(a["event"] == "unpause" and a["detail"]["by"] == "expiry" for a in audit), audit


def test_an_action_notification_arrives_through_alertmanager(live):
    node = live.nodes[2]
    assert post_xid(live, node).status_code == 200
    inc = incident_for(live, node, "succeeded")

    def acted(b: dict) -> bool:
        return any(a["labels"].get("alertname") == "VigilRemediation" and a["labels"].get("incident") == str(inc["id"])
                   for a in b["alerts"])
    got = live.receiver.wait_for(acted, 60)
    assert got.body["receiver"] == "vigil-notifications"
    (a,) = [a for a in got.body["alerts"] if a["labels"]["incident"] == str(inc["id"])]
    assert {k: a["labels"][k] for k in ("action", "result", "target", "event", "cluster")} == {
        "action": "cordon_node", "result": "succeeded", "target": node, "event": "acted", "cluster": "test"}
    assert "cordon_node" in a["annotations"]["summary"]
    # Alertmanager holds it with the short endsAt Vigil set (5 minutes): it expires by itself.
    held = requests.get(f"{live.alertmanager_url}/api/v2/alerts", timeout=10,
                        params={"filter": [f'incident="{inc["id"]}"', 'alertname="VigilRemediation"']}).json()
    ends = [dt.datetime.fromisoformat(h["endsAt"].replace("Z", "+00:00")) -
            dt.datetime.fromisoformat(h["startsAt"].replace("Z", "+00:00")) for h in held]
    assert ends and all(dt.timedelta(minutes=4) < e <= dt.timedelta(minutes=5) for e in ends), held
    # The routing test of the shipped file: VigilRemediation goes to vigil-notifications and nowhere else.
    r = subprocess.run([tool("amtool"), "config", "routes", "test", "--config.file=alerts/alertmanager.yml",
                        "--verify.receivers=vigil-notifications", "alertname=VigilRemediation", "severity=critical",
                        "incident=1", "action=cordon_node", "result=succeeded", "target=n"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_status_page_in_headless_chromium(live):
    if not any(i["status"] == "succeeded" for i in oc.get(live, "/api/incidents")["items"]):
        assert post_xid(live, live.nodes[0]).status_code == 200
        incident_for(live, live.nodes[0], "succeeded", "blocked")
    assert live.cli("pause", "--reason", "checking the status page", "--for", "1h").returncode == 0
    try:
        api = oc.get(live, "/api/incidents?limit=20")["items"]
        status = oc.get(live, "/api/status")
        host = live.url.removeprefix("http://")
        url = f"http://viewer:{oc.VIEWER_PASSWORD}@{host}/"
        r = oc.browse(url, live.workdir, "--dump-dom")
        dom = r.stdout
        assert "<h1>Vigil remediator</h1>" in dom, (dom[:500], r.stderr[-2000:])
        for i in api:
            row = re.search(rf'<tr id="incident-{i["id"]}" class="incident" data-status="([a-z_]+)"', dom)
            assert row and row.group(1) == i["status"], (i["id"], i["status"])
        assert 'id="pause" class="card bad" data-paused="true"' in dom
        assert '<div id="resume-hint">resume (admin): <code>remediator resume</code>' in dom
        # Who leads (a name, never an object's repr), whether Vigil is armed, and why each incident is where it is.
        assert status["leader"] and "object at" not in status["leader"]
        assert f'<span id="leader">{status["leader"]}</span>' in dom
        assert ('id="armed" data-armed="true"' in dom) == (not status["dry_run"])
        assert "<th>status</th><th>reason</th>" in dom
        for i in api:
            assert re.search(rf'<tr id="incident-{i["id"]}"[^>]*>.*?<td class="reason">'
                             rf'{re.escape(str(escape(i["reason"] or "-")))}</td>', dom, re.DOTALL), i
        assert "checking the status page" in dom and status["pause"]["until"] in dom
        assert f'data-open="{str(status["breaker_open"]).lower()}"' in dom
        whole, pool = status["budget"]  # the managed nodes, then each pool (safety.budget.pools)
        for row in (whole, pool):
            assert re.search(rf'data-pool="{re.escape(row["pool"])}"><td>[^<]+</td><td>{row["out"]}</td>\s*'
                             rf'<td>{row["allowed"]}</td><td>{row["total"]}</td>', dom), (row, dom)
        assert whole["pool"].startswith("managed nodes (vigil.io/pool=oncall-")
        assert whole["total"] == 3 and whole["out"] >= 1 and whole["allowed"] == 2
        assert pool["pool"].startswith("vigil.io/pool=oncall-") and pool["allowed"] == 3 and pool["total"] == 3
        assert 'id="grafana-link" href="http://127.0.0.1:3000/d/vigil-remediation"' in dom
        assert f'id="alertmanager-link" href="{live.alertmanager_url}"' in dom
        assert "cordon_node(" in dom
        # No JavaScript: none in the page, and the page's policy would block any (default-src 'none').
        page = requests.get(f"{live.url}/", auth=("viewer", oc.VIEWER_PASSWORD), timeout=10)
        assert "<script" not in page.text and "default-src 'none'" in page.headers["Content-Security-Policy"]

        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shot = (SCREENSHOT_DIR / "status-page.png").resolve()
        r = oc.browse(url, live.workdir, f"--screenshot={shot}", "--window-size=1280,1000")
        assert shot.exists(), r.stderr[-2000:]
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one

        # Without credentials the browser gets the 401 (and the Basic challenge), not the page.
        r = oc.browse(f"http://{host}/", live.workdir, "--dump-dom")
        assert "Vigil remediator" not in r.stdout
        assert "unauthorized" in r.stdout or "ERR_INVALID_AUTH_CREDENTIALS" in r.stderr, (r.stdout, r.stderr[-500:])
    finally:
        assert live.cli("resume").returncode == 0
