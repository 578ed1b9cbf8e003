"""Approvals and maintenance windows on the real local cluster, through the webhook: a reboot that
needs approval cordons and drains at once, then waits; the request reaches a real Alertmanager
with the approve command; it survives a restart; `remediator approve` (the CLI, over HTTP) lets the
ladder go on with every rail checked again, `deny` leaves the node cordoned and hands the incident
over. A window with an injected clock (through a restart): the gated step waits until the window opens and runs
inside it; a step running at the close finishes; nothing new starts after."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading

import pytest
import requests
from kubernetes import client
from waitress import create_server

from remediator.cluster.kube import Kube
from remediator.runtime.approvals import Approvals
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app
from tests.k8s.controlplane import wait_until
from tests.stack import Stack

from .conftest import TOKEN, Harness
from .repair_env import install_crds
from .test_repair_ladders import FAST_JOBS, NODE, _reboot_agent, _restart

pytestmark = pytest.mark.k8s


def _ladder() -> dict:
    return {"rules": [{
        "name": "xid-reboot", "match": ['alertname="GpuXidCritical"'],
        "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                    {"type": "drain_node", "params": {"node": NODE, "timeout": "20s"}},
                    {"type": "reboot_node", "params": {"node": NODE}, "approval": "required"},
                    {"type": "validate_node", "params": {"node": NODE, "uuid": "{{ labels.uuid }}"}},
                    {"type": "uncordon_node", "params": {"node": NODE}}]}]}


@pytest.fixture
def alertmanager(tmp_path):
    stack = Stack(tmp_path)
    (tmp_path / "am").mkdir()
    try:
        yield stack.start_alertmanager("http://127.0.0.1:9/unused", "t")
    finally:
        stack.stop()


def _reboot_jobs(h: Harness, node: str) -> list:
    return [j for j in client.BatchV1Api(h.api).list_namespaced_job("vigil-repair").items
            if j.spec.template.spec.node_name == node and "reboot" in j.metadata.name]


def _awaiting(h: Harness) -> dict:
    [inc] = h.wait_status("waiting", timeout=60)
    detail = h.incident(inc["id"])
    assert detail["reason"] == "approval", detail
    return detail


def _remediator_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return subprocess.run([sys.executable, "-m", "remediator.cli", *args], capture_output=True, text=True,
                          env={**env, "VIGIL_URL": url, "VIGIL_TOKEN": TOKEN}, timeout=60)


def test_a_reboot_needing_approval_drains_at_once_waits_through_a_restart_and_goes_on_once_approved(
        remediator, k8s_cluster, alertmanager):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=_ladder(), overrides={
        "repair": FAST_JOBS, "notifications": {"alertmanager_urls": [alertmanager]}})
    node = h.nodes[0]
    assert h.post(h.xid(node)).status_code == 200
    detail = _awaiting(h)
    incident = detail["id"]
    steps = [(a["type"], a["state"]) for a in detail["actions"]]
    assert steps[:2] == [("cordon_node", "succeeded"), ("drain_node", "succeeded")], steps
    assert ("reboot_node", "cancelled") in steps, steps  # the rest of the chain waits, decided afresh later
    assert h.unschedulable(node) and not _reboot_jobs(h, node), "cordoned and drained; no reboot yet"
    assert f"reboot_node({node}) needs approval: remediator approve {incident}" in detail["detail"]
    assert [e["event"] for e in detail["audit"]].count("approval_requested") == 1

    # the request reaches a real Alertmanager, with what to run to answer it
    def pushed():
        return requests.get(f"{alertmanager}/api/v2/alerts", params={"filter": 'result="awaiting_approval"'},
                            timeout=5).json()
    [a] = wait_until(pushed, 30, what="the awaiting_approval notification in Alertmanager")
    assert a["labels"]["alertname"] == "VigilRemediation" and a["labels"]["incident"] == str(incident)
    assert a["labels"]["action"] == "reboot_node" and a["labels"]["target"] == node
    assert a["annotations"]["step"] == f"reboot_node({node})"
    assert a["annotations"]["approve_command"].startswith(f"remediator approve {incident} --reason")
    assert a["annotations"]["deny_command"].startswith(f"remediator deny {incident} --reason")

    _restart(h)  # the request is durable: still waiting, still pending, not asked twice
    assert Approvals(h.ledger, h.engine.clock, lambda e: None).pending(incident) == [f"reboot_node({node})"]
    assert h.incident(incident)["status"] == "waiting" and not _reboot_jobs(h, node)

    # bad answers are refused with a JSON 4xx, changing nothing
    r = h.http.post(f"/api/incidents/{incident}/approve", json={}, headers=h.headers)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_body"
    r = h.http.post("/api/incidents/999999/approve", json={"reason": "x"}, headers=h.headers)
    assert r.status_code == 404
    r = h.http.post(f"/api/incidents/{incident}/approve", json={"reason": "x", "step": "reboot_node(other)"},
                    headers=h.headers)
    assert r.status_code == 409 and f"reboot_node({node})" in r.get_json()["detail"]

    server = create_server(create_app(h.config, h.ledger, h.engine, h.metrics), host="127.0.0.1", port=0, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        _reboot_agent(h, node)
        r = _remediator_cli(f"http://127.0.0.1:{server.effective_port}", "approve", str(incident), "--reason",
                            "checked the node")
        assert r.returncode == 0, r.stderr
        assert f"reboot_node({node}) approved by" in r.stdout
        r = _remediator_cli(f"http://127.0.0.1:{server.effective_port}", "approve", str(incident), "--reason", "x")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr  # answered: nothing waits
        assert "is not waiting for approval" in r.stderr
        r = _remediator_cli(f"http://127.0.0.1:{server.effective_port}", "deny", str(incident))  # no --reason
        assert r.returncode == 2 and "--reason" in r.stderr
    finally:
        server.close()
    done = wait_until(lambda: (i := h.incident(incident))["status"] in ("succeeded", "failed", "blocked") and i, 90,
                      what="the ladder to finish")
    steps = [(a["type"], a["state"]) for a in done["actions"]]
    assert done["status"] == "succeeded", steps
    assert [t for t, s in steps if s == "succeeded"][-3:] == ["reboot_node", "validate_node", "uncordon_node"]
    assert not h.unschedulable(node), "rebooted, validated, back in service"
    approved = [e for e in done["audit"] if e["event"] == "approved"]
    assert len(approved) == 1 and approved[0]["detail"]["reason"] == "checked the node"
    assert approved[0]["detail"]["by"].endswith("@127.0.0.1")


def test_deny_leaves_the_node_cordoned_and_hands_the_incident_over(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=_ladder(), overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    assert h.post(h.xid(node)).status_code == 200
    incident = _awaiting(h)["id"]
    page = h.http.get("/", headers=h.headers).get_data(as_text=True)  # an admin gets the buttons
    assert f'action="/incidents/{incident}/approve"' in page and f'action="/incidents/{incident}/deny"' in page
    r = h.http.post(f"/incidents/{incident}/deny", data={"reason": "the job owner wants the node as it is"},
                    headers=h.headers)
    assert r.status_code == 303, r.get_data(as_text=True)
    done = wait_until(lambda: (i := h.incident(incident))["status"] == "handed_over" and i, 30,
                      what="handed over")
    assert done["reason"] == "denied" and "handed to people" in done["detail"]
    assert "the job owner wants the node as it is" in done["detail"]
    assert h.unschedulable(node) and not _reboot_jobs(h, node), "left cordoned, never rebooted"
    r = h.http.post(f"/api/incidents/{incident}/approve", json={"reason": "changed my mind"}, headers=h.headers)
    assert r.status_code == 409, "a denial is final"


class Clock:
    """The engine's clock: real time moved by `offset` (the test jumps to a window's opening and close)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


def _restart_with(h: Harness, clock: Clock) -> None:
    h.engine.stop()
    h.ledger.close()
    h.ledger = SQLiteLedger(h.config.ledger_path)
    h.metrics = Metrics(h.ledger.counts_by_status)
    kube = Kube(h.config.kubeconfig, node_selector=h.config.node_selector)
    h.engine = Engine(h.config, h.ledger, kube, h.metrics, clock=clock)
    h.http = create_app(h.config, h.ledger, h.engine, h.metrics).test_client()
    h.engine.start()


def _taints(h: Harness, node: str) -> list[str]:
    return [t.key for t in h.core.read_node(node).spec.taints or []]


def test_a_step_waits_for_its_window_runs_inside_it_and_nothing_new_starts_after_the_close(remediator):
    clock = Clock()
    opens = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)).replace(second=0, microsecond=0)
    node_key = "vigil.io/maintenance"
    h = remediator(nodes=2, clock=clock, overrides={"engine": {"reconcile_interval": "2s"}}, policy={
        "maintenance_windows": {"soon": {"schedule": f"{opens.minute} {opens.hour} * * *", "duration": "10m"}},
        "rules": [{"name": "windowed", "match": ['alertname="GpuXidCritical"'],
                   "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                               {"type": "drain_node", "params": {"node": NODE, "timeout": "60s"}, "window": "soon"},
                               {"type": "taint_node", "params": {"node": NODE, "key": node_key}, "window": "soon"}]}]})
    node = h.nodes[0]
    h.deploy("pinned", 1, nodeSelector={"kubernetes.io/hostname": node})
    policy = client.PolicyV1Api(h.api)
    policy.create_namespaced_pod_disruption_budget(h.namespace, {
        "metadata": {"name": "pinned-pdb"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "pinned"}}}})
    wait_until(lambda: (policy.read_namespaced_pod_disruption_budget("pinned-pdb", h.namespace).status
                        .observed_generation or 0) >= 1, 30, what="PDB status")

    # before the window: the cordon runs at once, the drain waits for the opening
    assert h.post(h.xid(node)).status_code == 200
    [inc] = h.wait_status("waiting", timeout=60)
    detail = h.incident(inc["id"])
    assert detail["reason"] == "window" and f"window soon opens at {opens.isoformat()}" in detail["detail"], detail
    assert h.unschedulable(node) and len(h.running("pinned")) == 1, "cordoned, not drained"
    [w] = h.http.get("/api/status", headers=h.headers).get_json()["windows"]
    assert (w["name"], w["open"], w["waiting"]) == ("soon", False, [inc["id"]])
    assert w["opens_at"].startswith(opens.strftime("%Y-%m-%dT%H:%M:00"))
    _restart_with(h, clock)  # the wait is ledger state: a restarted remediator waits for the same opening
    assert h.incident(inc["id"])["status"] == "waiting"

    # the window opens: the drain starts (and is held by the PDB, so it is still running at the close)
    clock.offset = opens - dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    wait_until(lambda: any(a["type"] == "drain_node" and a["state"] == "running"
                           for a in h.incident(inc["id"])["actions"]), 30, what="the drain running in the window")

    # the window closes while the drain runs: it finishes; the taint, not yet started, does not start
    clock.offset = opens + dt.timedelta(minutes=10, seconds=5) - dt.datetime.now(dt.UTC)
    policy.delete_namespaced_pod_disruption_budget("pinned-pdb", h.namespace)
    done = wait_until(lambda: (i := h.incident(inc["id"]))["status"] == "waiting" and any(
        a["type"] == "drain_node" and a["state"] == "succeeded" for a in i["actions"]) and i, 60,
        what="the drain finished and the taint waiting")
    assert done["reason"] == "window" and "opens at" in done["detail"]
    assert node_key not in _taints(h, node), "nothing new starts after the close"
    assert not h.running("pinned"), "drained"

    # the next opening: the rest of the chain runs (the cordon and the drain again, idempotent, then the taint)
    clock.offset = opens + dt.timedelta(days=1, seconds=5) - dt.datetime.now(dt.UTC)
    try:
        final = h.wait_status("succeeded", timeout=60)
    except TimeoutError:
        i = h.incident(inc["id"])
        raise AssertionError((i["status"], i["reason"], i["detail"], i["trace"][-3:],
                              [(a["type"], a["state"], a["result"]) for a in i["actions"]][-4:])) from None
    assert node_key in _taints(h, node) and final[0]["id"] == inc["id"]


def test_an_escalation_step_waits_for_approval_and_runs_once_approved(remediator):
    """The cordon does not help (the alert keeps firing): the escalation's drain needs a person."""
    h = remediator(nodes=2, overrides={"engine": {"reconcile_interval": "2s"}}, policy={"rules": [{
        "name": "esc", "match": ['alertname="GpuXidCritical"'],
        "actions": [{"type": "cordon_node", "params": {"node": NODE}}],
        "verify": {"alert_resolved": True, "deadline": "1s", "interval": "500ms"},
        "escalate": {"steps": [{"type": "taint_node", "params": {"node": NODE, "key": "vigil.io/escalated"},
                                "approval": "required"}]}}]})
    node = h.nodes[0]
    assert h.post(h.xid(node)).status_code == 200
    [inc] = h.wait_status("succeeded", timeout=60)

    def asked():
        return Approvals(h.ledger, h.engine.clock, lambda e: None).pending(inc["id"])
    assert wait_until(asked, 30, what="the escalation's approval request") == [f"taint_node({node})"]
    assert "vigil.io/escalated" not in _taints(h, node)
    r = h.http.post(f"/api/incidents/{inc['id']}/approve", json={"reason": "go on"}, headers=h.headers)
    assert r.status_code == 200, r.get_json()
    wait_until(lambda: "vigil.io/escalated" in _taints(h, node), 30, what="the approved escalation step")
    events = [e["event"] for e in h.incident(inc["id"])["audit"]]
    assert events.count("approval_requested") == 1 and "escalation:act" in events
