"""Repair ladders through the real remediator (webhook, ledger, engine) on the local cluster: reboot
then validate then uncordon, with a silence on a real Alertmanager created and expired around it;
validation failing and the ladder stopping with the node marked; the repeat-offender stop counted
from the ledger across a restart of the remediator."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
import requests
from kubernetes import client

from remediator.cluster.kube import Kube
from remediator.runtime.engine import Engine
from remediator.runtime.metrics import Metrics
from remediator.store.ledger import SQLiteLedger
from remediator.web.app import create_app
from tests.k8s.controlplane import wait_until
from tests.stack import Stack

from .conftest import Harness
from .payloads import alert, body, xid_labels
from .repair_env import install_crds

pytestmark = pytest.mark.k8s
FAILS = "example.invalid/vigil-test-fails:1"
NODE = "{{ labels.node }}"
FAST_JOBS = {"reset_gpu": {"timeout": "30s"}, "reboot": {"job": {"timeout": "30s"}},
             "validate": {"job": {"timeout": "30s"}}, "pods_gone_timeout": "5s"}


def _ladder(validate_image: str | None = None, **rule) -> dict:
    return {"rules": [{
        "name": "xid-reboot-ladder", "match": ['alertname="GpuXidCritical"'],
        "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                    {"type": "drain_node", "params": {"node": NODE, "timeout": "20s"}},
                    {"type": "reboot_node", "params": {"node": NODE}},
                    {"type": "validate_node", "params": {"node": NODE, "uuid": "{{ labels.uuid }}",
                                                         **({"image": validate_image} if validate_image else {})}},
                    {"type": "uncordon_node", "params": {"node": NODE}}], **rule}]}


def _reboot_agent(h: Harness, node: str) -> None:
    """The simulated node: when a reboot Job for it appears, it comes back with a new bootID."""
    def run() -> None:
        batch = client.BatchV1Api(h.api)
        wait_until(lambda: [j for j in batch.list_namespaced_job("vigil-repair").items
                            if j.spec.template.spec.node_name == node and "reboot" in j.metadata.name], 60,
                   what="reboot Job")
        h.core.patch_node_status(node, {"status": {"nodeInfo": {"bootID": secrets.token_hex(8)}}})
    import threading
    threading.Thread(target=run, daemon=True).start()


@pytest.fixture
def alertmanager(tmp_path):
    stack = Stack(tmp_path / "am")
    (tmp_path / "am").mkdir()
    try:
        yield stack.start_alertmanager("http://127.0.0.1:9/unused", "t")
    finally:
        stack.stop()


def test_reboot_validate_uncordon_with_a_silence_around_it(remediator, k8s_cluster, alertmanager):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=_ladder(), overrides={"repair": {
        **FAST_JOBS, "silences": {"alertmanager_url": alertmanager, "grace": "30m"}}})
    node = h.nodes[0]
    _reboot_agent(h, node)
    assert h.post(h.xid(node)).status_code == 200
    [inc] = h.wait_status("succeeded", "failed", "blocked", timeout=90)
    detail = h.incident(inc["id"])
    steps = [(a["type"], a["state"]) for a in detail["actions"]]
    assert inc["status"] == "succeeded", (steps, detail["actions"][-1]["result"])
    assert [t for t, _ in steps] == ["cordon_node", "drain_node", "reboot_node", "validate_node", "uncordon_node"]
    assert not h.unschedulable(node), "validated, so back in service"
    sid = detail["actions"][2]["result"]["silence_id"]
    assert detail["actions"][3]["result"]["silences_expired"] == [sid]
    events = [a["event"] for a in detail["audit"]]
    assert events.index("silence_created") < events.index("silence_expired")
    s = requests.get(f"{alertmanager}/api/v2/silence/{sid}", timeout=5).json()
    assert s["status"]["state"] == "expired" and s["createdBy"] == "vigil"
    assert f"incident {inc['id']}" in s["comment"]
    assert s["matchers"] == [{"name": "node", "value": node, "isRegex": False, "isEqual": True}]


def test_failed_validation_keeps_the_node_out_and_the_ladder_marks_it(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=_ladder(FAILS, on_failure={"steps": [
        {"type": "mark_rma_candidate", "params": {"node": NODE, "reason": "validation failed after a reboot"}}]}),
        overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    _reboot_agent(h, node)
    assert h.post(h.xid(node)).status_code == 200
    [inc] = h.wait_status("failed", "succeeded", "blocked", timeout=90)
    detail = wait_until(lambda: (d := h.incident(inc["id"]))["actions"][-1]["type"] == "mark_rma_candidate" and
                        d["actions"][-1]["state"] in ("succeeded", "failed", "blocked") and d, 30,
                        what="the on_failure step")
    steps = [(a["type"], a["state"]) for a in detail["actions"]]
    assert steps == [("cordon_node", "succeeded"), ("drain_node", "succeeded"), ("reboot_node", "succeeded"),
                     ("validate_node", "failed"), ("uncordon_node", "cancelled"), ("mark_rma_candidate", "succeeded")]
    n = h.core.read_node(node)
    assert n.spec.unschedulable and n.metadata.labels["vigil.io/rma-candidate"] == "true"
    assert n.metadata.annotations["vigil.io/rma-reason"] == "validation failed after a reboot"


def _restart(h: Harness) -> Harness:
    h.engine.stop()
    h.ledger.close()
    ledger = SQLiteLedger(h.config.ledger_path)
    metrics = Metrics(ledger.counts_by_status)
    kube = Kube(h.config.kubeconfig, node_selector=h.config.node_selector)  # the old one stopped with its engine
    engine = Engine(h.config, ledger, kube, metrics)
    app = create_app(h.config, ledger, engine, metrics)
    engine.start()
    h.ledger, h.engine, h.metrics, h.http = ledger, engine, metrics, app.test_client()
    return h


def test_a_node_repaired_too_often_is_marked_and_not_repaired_again_after_a_restart(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    policy = {"rules": [{"name": "reset", "match": ['alertname="GpuXidCritical"'],
                         "actions": [{"type": "reset_gpu", "params": {"node": NODE, "uuid": "{{ labels.uuid }}"}}]}]}
    h = remediator(nodes=2, policy=policy, overrides={"repair": {
        **FAST_JOBS, "repeat_offenders": {"max_repairs": 2, "window": "7d"}}})
    node = h.nodes[0]
    now = dt.datetime.now(dt.UTC)
    for i in range(2):  # two faults, two incidents (a new startsAt each, after the last repair), two resets
        assert h.post(body(alert(xid_labels(node), starts_at=dt.datetime.now(dt.UTC)))).status_code == 200
        h.wait_status("succeeded", count=i + 1, timeout=60)
    _restart(h)
    assert h.post(body(alert(xid_labels(node), starts_at=dt.datetime.now(dt.UTC)))).status_code == 200
    items = wait_until(lambda: [i for i in h.incidents() if i["status"] == "blocked"], 60, what="third blocked")
    third = h.incident(items[0]["id"])
    assert third["reason"] == "repair_exhausted" and "repaired 2 times" in third["detail"], third
    assert not third["actions"], "the repeat_offenders rail stopped the plan: no reset"
    assert any(line.startswith("repeat_offenders: blocked (repair_exhausted)") for line in third["trace"])
    assert "repair_exhausted" in [a["event"] for a in third["audit"]]
    n = wait_until(lambda: (x := h.core.read_node(node)).metadata.labels.get("vigil.io/rma-candidate") and x, 10,
                   what="the RMA label")
    assert n.metadata.labels["vigil.io/rma-candidate"] == "true" and n.spec.unschedulable
    assert "repaired 2 times" in n.metadata.annotations["vigil.io/rma-reason"]
    assert h.metrics.repairs_exhausted._value.get() == 1
    jobs = client.BatchV1Api(h.api).list_namespaced_job("vigil-repair").items
    assert len([j for j in jobs if j.spec.template.spec.node_name == node]) == 2, "no third reset"
    other = h.nodes[1]  # another node is repaired as usual
    assert h.post(body(alert(xid_labels(other), starts_at=now))).status_code == 200
    wait_until(lambda: any(i["labels"]["node"] == other and i["status"] == "succeeded" for i in h.incidents()), 60,
               what="the other node's reset")


def test_validation_on_resolve_passes_the_rails_like_the_uncordon(remediator, k8s_cluster):
    """The validation Job changes the cluster too: on a node paused by its annotation, a resolve
    neither validates nor uncordons (no Job is created); the node stays cordoned and the follow-up
    waits, tried again, until the pause is lifted: then it validates and returns the node."""
    install_crds(k8s_cluster)
    h = remediator(nodes=2, overrides={"repair": FAST_JOBS}, policy={"rules": [{
        "name": "gpu", "match": ['alertname="GpuXidCritical"'],
        "actions": [{"type": "cordon_node", "params": {"node": NODE}}],
        "on_resolved": {"uncordon": True, "validate": True}}]})
    node = h.nodes[0]
    gate, held = h.engine.followup._gate, []

    def counted(step):
        try:
            return gate(step)
        except Exception as exc:
            held.append(str(exc))
            raise
    h.engine.followup._gate = counted
    payload = h.xid(node)
    assert h.post(payload).status_code == 200
    h.wait_status("succeeded")
    h.core.patch_node(node, {"metadata": {"annotations": {"vigil.io/remediation": "disabled"}}})
    payload["alerts"][0]["status"] = "resolved"
    assert h.post(payload).status_code == 200
    wait_until(lambda: len([x for x in held if "disabled" in x]) >= 3, 60, what="the follow-up held, tried again")
    assert h.unschedulable(node) and not h.incidents()[0]["after_resolve"]
    jobs = client.BatchV1Api(h.api).list_job_for_all_namespaces().items
    assert not [j for j in jobs if j.spec.template.spec.node_name == node], "a validation Job ran on a paused node"
    assert not any(a["event"] == "validate" for a in h.incident(h.incidents()[0]["id"])["audit"])
    h.core.patch_node(node, {"metadata": {"annotations": {"vigil.io/remediation": None}}})
    after = wait_until(lambda: h.incidents()[0]["after_resolve"], 90, what="after_resolve")
    assert "uncordon" in after and not h.unschedulable(node), after


def _resolve(h: Harness, payload: dict) -> None:
    payload = dict(payload, status="resolved", alerts=[dict(payload["alerts"][0], status="resolved",
                                                            endsAt=dt.datetime.now(dt.UTC).isoformat())])
    assert h.post(payload).status_code == 200


def test_a_resolve_right_after_the_reboot_still_validates_and_returns_the_node(remediator, k8s_cluster):
    """No on_resolved in the rule: the ladder that took the node out brings it back (validated)."""
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=_ladder(), overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    _reboot_agent(h, node)
    payload = h.xid(node)
    assert h.post(payload).status_code == 200
    wait_until(lambda: any(a["type"] == "reboot_node" and a["state"] == "succeeded"
                           for a in h.incident(h.incidents()[0]["id"])["actions"]), 90, what="the reboot")
    _resolve(h, payload)  # as the latched fault clears with the new boot ID
    wait_until(lambda: not h.unschedulable(node), 90, what="the node returned to service")
    inc = h.incident(h.incidents()[0]["id"])
    assert inc["status"] == "succeeded", inc
    assert any(a["event"] == "validate" and a["detail"]["state"] == "succeeded" for a in inc["audit"]) or any(
        a["type"] == "validate_node" and a["state"] == "succeeded" for a in inc["actions"]), "validated first"


def test_one_fault_raising_three_alerts_gives_one_reboot(remediator, k8s_cluster):
    """XID 79, GpuLost for the same GPU and a second XID on the node: one ladder, one reboot Job."""
    install_crds(k8s_cluster)
    ladder = _ladder()["rules"][0]
    lost = dict(ladder, name="gpu-lost", match=['alertname="GpuLost"'])
    h = remediator(nodes=2, policy={"rules": [ladder, lost]}, overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    _reboot_agent(h, node)
    assert h.post(h.xid(node)).status_code == 200
    assert h.post(body(alert({**xid_labels(node), "alertname": "GpuLost"}))).status_code == 200
    assert h.post(body(alert(xid_labels(node, gpu="5", xid="48")))).status_code == 200
    wait_until(lambda: len(h.incidents()) == 3 and any(i["status"] == "succeeded" for i in h.incidents()), 120,
               what="the first ladder done")
    others = [i for i in h.incidents() if i["status"] != "succeeded"]
    assert [i["status"] for i in others] == ["waiting", "waiting"], [(i["status"], i["detail"]) for i in others]
    assert {i["reason"] for i in others} <= {"joined", "node_settling"}, others  # they resolve with the repair
    jobs = client.BatchV1Api(h.api).list_namespaced_job("vigil-repair").items
    reboots = [j for j in jobs if j.spec.template.spec.node_name == node and "reboot" in j.metadata.name]
    assert len(reboots) == 1, [j.metadata.name for j in reboots]


def test_a_reboot_that_never_completes_ends_terminal_cordoned_and_unsilenced(remediator, k8s_cluster, alertmanager):
    install_crds(k8s_cluster)
    h = remediator(nodes=2, policy=_ladder(), overrides={"repair": {
        **FAST_JOBS, "reboot": {"job": {"timeout": "5s"}},
        "silences": {"alertmanager_url": alertmanager, "grace": "30m"}}})
    node = h.nodes[0]  # no node agent: the node never comes back with a new boot ID
    assert h.post(h.xid(node)).status_code == 200
    [inc] = h.wait_status("failed", "blocked", timeout=120)
    detail = h.incident(inc["id"])
    assert inc["reason"], inc
    assert h.unschedulable(node), "a node whose repair did not finish stays out, with people"
    sid = next(a["result"]["silence_id"] for a in detail["actions"] if a["type"] == "reboot_node")
    state = wait_until(lambda: (s := requests.get(f"{alertmanager}/api/v2/silence/{sid}", timeout=5).json()
                                )["status"]["state"] == "expired" and s, 30, what="the silence expired")
    assert state["status"]["state"] == "expired"


def test_the_gpu_lost_ladder_leaves_no_vigil_taint_behind(remediator, k8s_cluster):
    install_crds(k8s_cluster)
    rule = {"name": "gpu-lost", "match": ['alertname="GpuLost"'],
            "actions": [{"type": "cordon_node", "params": {"node": NODE}},
                        {"type": "taint_node", "params": {"node": NODE, "key": "vigil.io/gpu-lost",
                                                          "value": "gpu{{ labels.gpu }}", "effect": "NoSchedule"}},
                        {"type": "drain_node", "params": {"node": NODE, "timeout": "20s"}},
                        {"type": "reboot_node", "params": {"node": NODE}},
                        {"type": "validate_node", "params": {"node": NODE, "uuid": "{{ labels.uuid }}"}},
                        {"type": "uncordon_node", "params": {"node": NODE}}]}
    h = remediator(nodes=2, policy={"rules": [rule]}, overrides={"repair": FAST_JOBS})
    node = h.nodes[0]
    _reboot_agent(h, node)
    assert h.post(body(alert({**xid_labels(node), "alertname": "GpuLost"}))).status_code == 200
    [inc] = h.wait_status("succeeded", "failed", "blocked", timeout=120)
    assert inc["status"] == "succeeded", h.incident(inc["id"])["actions"]
    n = h.core.read_node(node)
    assert not n.spec.unschedulable
    assert not [t for t in n.spec.taints or [] if t.key.startswith("vigil.io/")], n.spec.taints
    assert "vigil.io/taints" not in (n.metadata.annotations or {})
