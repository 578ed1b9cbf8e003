"""What only the Kubernetes ledger promises, on the real local apiserver: claims are compare-and-swap
with a fencing term, objects stay small, `kubectl get vigilincidents` reads well, retention deletes,
and intake answers 503 when the API cannot be written."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from kubernetes import client

from remediator.config import parse_config
from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import parse
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store import incident_object as io
from remediator.web.app import create_app

from .ledgers import open_kubernetes
from .payloads import alert, body, xid_labels

pytestmark = pytest.mark.k8s
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def ns(vigil_crds, unique) -> str:
    name = f"vi-{unique}"
    client.CoreV1Api(vigil_crds.api_client()).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def opened():
    made: list = []
    yield made
    for lg in made:
        lg.close()


def open_(cp, ns, opened, **kw):
    lg = open_kubernetes(cp, ns, **kw)
    opened.append(lg)
    return lg


def alerts(*a: dict):
    return parse(json.dumps(body(*a)).encode()).alerts


def act(node: str) -> Decision:
    return Decision("act", rule="r", actions=(PlannedAction("cordon_node", node, {"node": node}),
                                              PlannedAction("drain_node", node, {"node": node})))


def test_claims_are_compare_and_swap_with_a_fencing_term(vigil_crds, ns, opened):
    """Two leaders of a split brain (different holders and terms) never both run an action."""
    old = open_(vigil_crds, ns, opened, token=("a", 1))
    new = open_(vigil_crds, ns, opened, token=("b", 2))
    old.record(alerts(alert(xid_labels("n1"), starts_at=NOW)), NOW)
    inc = old.due(NOW)[0]
    first, _ = old.save_decision(inc.id, act("n1"), NOW)
    assert new.save_decision(inc.id, act("n1"), NOW) == [], "decided once, whoever asks"
    assert old.claim_action(first, NOW) is not None
    late = open_(vigil_crds, ns, opened, token=("c", 1))
    assert late.claim_action(first, NOW) is None, "a running action is not taken by an equal or older term"
    assert new.claim_action(first, NOW) is not None, "a later term takes over a running action (crash resume)"
    assert old.claim_action(first, NOW) is None, "the old leader cannot claim it back"


def test_stale_writes_get_409_and_the_transition_is_reapplied(vigil_crds, ns, opened):
    lg = open_(vigil_crds, ns, opened, watch=False)  # no watch: its cache goes stale on purpose
    other = open_(vigil_crds, ns, opened, watch=False)
    lg.record(alerts(alert(xid_labels("n1"), starts_at=NOW)), NOW)
    inc = lg.due(NOW)[0]
    other.resync()
    ids = other.save_decision(inc.id, act("n1"), NOW)  # lg's cached copy is now stale
    custom = client.CustomObjectsApi(vigil_crds.api_client())
    name = io.name_of(inc.fingerprint, inc.starts_at)
    stale = lg._objs[name]
    with pytest.raises(client.ApiException) as err:
        custom.replace_namespaced_custom_object("vigil.io", "v1alpha1", ns, "vigilincidents", name, stale)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
    assert lg.save_decision(inc.id, act("n1"), NOW) == [], "re-read after the 409: already decided"
    assert lg.claim_action(ids[0], NOW).type == "cordon_node", "the claim re-reads and applies to the new state"


def test_objects_stay_small_and_count_what_they_drop(vigil_crds, ns, opened):
    lg = open_(vigil_crds, ns, opened)
    lg.record(alerts(alert(xid_labels("n1"), starts_at=NOW, annotations={"summary": "x" * 50_000})), NOW)
    inc = lg.due(NOW)[0]
    for i in range(120):
        lg.audit("note", {"i": i, "blob": "y" * 5000}, NOW, incident_id=inc.id)
    for _ in range(300):  # a storm of repeats: a counter, not a list
        lg.record(alerts(alert(xid_labels("n1"), starts_at=NOW)), NOW)
    obj = client.CustomObjectsApi(vigil_crds.api_client()).get_namespaced_custom_object(
        "vigil.io", "v1alpha1", ns, "vigilincidents", io.name_of(inc.fingerprint, inc.starts_at))
    size = len(json.dumps(obj))
    assert size < 256 * 1024, f"{size} bytes"
    assert len(obj["status"]["audit"]) == io.MAX_AUDIT and obj["status"]["auditDropped"] == 120 - io.MAX_AUDIT
    assert obj["status"]["notifications"] == 301
    assert obj["status"]["audit"][-1]["detail"]["i"] == 119


def test_kubectl_get_vigilincidents_shows_the_printer_columns(vigil_crds, ns, opened):
    lg = open_(vigil_crds, ns, opened)
    lg.record(alerts(alert(xid_labels("gpu-node-7"), starts_at=NOW)), NOW)
    inc = lg.due(NOW)[0]
    lg.save_decision(inc.id, act("gpu-node-7"), NOW)
    out = vigil_crds.kubectl("get", "vigilincidents", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "ALERT", "TARGET", "STATUS", "RULE", "AGE"]
    assert out[1].split()[1:5] == ["GpuXidCritical", "gpu-node-7", "acting", "r"]
    assert vigil_crds.kubectl("get", "vi", "-n", ns, "-o", "name").stdout.startswith("vigilincident.vigil.io/vi-")


def test_retention_deletes_resolved_incidents_older_than_the_limit(vigil_crds, ns, opened):
    lg = open_(vigil_crds, ns, opened, retention=3600)
    old, fresh = alert(xid_labels("old"), starts_at=NOW), alert(xid_labels("fresh"), starts_at=NOW)
    lg.record(alerts(old, fresh), NOW)
    lg.record(alerts({**old, "status": "resolved"}), NOW - dt.timedelta(hours=2))
    lg.record(alerts({**fresh, "status": "resolved"}), NOW)
    lg.record(alerts(alert(xid_labels("firing"), starts_at=NOW - dt.timedelta(days=30))), NOW)
    assert lg.sweep(NOW) == 1
    left = sorted(i["labels"]["node"] for i in lg.list_incidents(status=None, alertname=None, limit=10, offset=0)[0])
    assert left == ["firing", "fresh"]


def test_intake_answers_503_when_the_api_cannot_be_written(vigil_crds, ns, opened, unique):
    lg = open_(vigil_crds, ns, opened)
    lg.api.namespace = f"gone-{unique}"  # writes now fail (404 namespace): the backend cannot be written
    os.environ["VIGIL_TEST_TOKEN"] = "t0ken-for-503-test"
    config = parse_config({"auth": {"bearer_token_env": "VIGIL_TEST_TOKEN"}, "safety": {"dry_run": True}}, "t.yaml")
    metrics = Metrics(lg.counts_by_status)
    app = create_app(config, lg, Engine(config, lg, None, metrics), metrics).test_client()
    r = app.post("/webhook/alertmanager", json=body(alert(xid_labels("n1"))),
                 headers={"Authorization": "Bearer t0ken-for-503-test"})
    assert r.status_code == 503 and r.get_json()["error"] == "ledger_unavailable"


def test_explain_reads_the_safety_state_from_the_kubernetes_ledger(vigil_crds, ns, opened, tmp_path):
    """`remediator explain` decides as the engine would: with the pause the Kubernetes ledger holds."""
    import subprocess
    import sys

    import yaml

    lg = open_(vigil_crds, ns, opened)
    lg.set_state("paused", "true")
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text(yaml.safe_dump({
        "ledger": {"backend": "kubernetes", "namespace": ns},
        "kubernetes": {"kubeconfig": str(vigil_crds.kubeconfig)},
        "policy": {"rules": [{"name": "r", "match": ['alertname="GpuXidCritical"'],
                              "actions": [{"type": "cordon_node", "params": {"node": "{{ labels.node }}"}}]}]}}))
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(body(alert(xid_labels("n1")))))
    r = subprocess.run([sys.executable, "-m", "remediator.cli", "explain", "--json", "--config", str(cfg),
                        str(payload)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ledger unavailable" not in r.stdout
    [result] = json.loads(r.stdout[r.stdout.index("["):])
    assert (result["outcome"], result["reason"]) == ("wait", "paused"), result  # held back, not refused


def test_the_watch_wakes_the_leader_for_work_recorded_elsewhere(vigil_crds, ns, opened):
    import threading

    leader, follower = open_(vigil_crds, ns, opened), open_(vigil_crds, ns, opened)
    woken = threading.Event()
    leader.set_listener(woken.set)
    follower.record(alerts(alert(xid_labels("n1"), starts_at=NOW)), NOW)
    assert woken.wait(10), "the watch event for the new incident wakes the engine"
    assert [i.labels["node"] for i in leader.due(NOW)] == ["n1"]
