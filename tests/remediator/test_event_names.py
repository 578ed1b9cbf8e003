"""Events that name an incident carry the ledger's uid: a fresh ledger's incident 1 is not an
older ledger's incident 1, so its Event is written, not skipped as "already there" (409). A 409 is
taken as done only when the Event there names the same ledger and incident."""

from __future__ import annotations

import pytest
from kubernetes import client

from remediator.cluster.kube import EVENT_INCIDENT, Kube
from remediator.store.ledger import SQLiteLedger
from tests.k8s.controlplane import add_gpu_nodes

pytestmark = pytest.mark.k8s


def _events(core: client.CoreV1Api, node: str, reason: str) -> list:
    return [e for e in core.list_namespaced_event("default", field_selector=f"involvedObject.name={node}").items
            if e.reason == reason]


def test_two_fresh_ledgers_each_get_their_own_events(k8s_api, tmp_path, unique):
    core = client.CoreV1Api(k8s_api.api_client())
    node = f"ev-{unique}"
    add_gpu_nodes(k8s_api.api_client(), [node], pool=f"ev-{unique}")
    uids = []
    for k in range(2):  # two ledgers, as after a lost volume: both number incidents from 1
        ledger = SQLiteLedger(str(tmp_path / f"ledger-{k}.db"))
        uids.append(ledger.uid)
        assert SQLiteLedger(str(tmp_path / f"ledger-{k}.db")).uid == ledger.uid  # kept across restarts
        kube = Kube(str(k8s_api.kubeconfig))
        kube.event_scope = ledger.uid
        obj = core.read_node(node)
        for incident in range(1, 251):
            kube.event(obj, "VigilCordon", f"Cordoned by Vigil for incident {incident}", incident=str(incident))
            if incident % 10 == 0:  # a retry or a resume: 409, ours, not written twice
                kube.event(obj, "VigilCordon", "again", incident=str(incident))
    assert uids[0] != uids[1]
    events = _events(core, node, "VigilCordon")
    owners = sorted(e.metadata.annotations[EVENT_INCIDENT] for e in events)
    assert owners == sorted(f"{u}/{i}" for u in uids for i in range(1, 251))  # 500: none skipped, none twice


def test_a_409_from_someone_elses_event_still_writes_ours(k8s_api, unique):
    core = client.CoreV1Api(k8s_api.api_client())
    node = f"ev2-{unique}"
    add_gpu_nodes(k8s_api.api_client(), [node], pool=f"ev2-{unique}")
    kube = Kube(str(k8s_api.kubeconfig))
    kube.event_scope = "aaaa"
    obj = core.read_node(node)
    kube.event(obj, "VigilCordon", "the older ledger's", incident="7")
    [theirs] = _events(core, node, "VigilCordon")
    theirs.metadata.annotations[EVENT_INCIDENT] = "another/7"  # as if written by someone else under that name
    core.replace_namespaced_event(theirs.metadata.name, "default", theirs)
    kube.event(obj, "VigilCordon", "ours", incident="7")
    owners = sorted(e.metadata.annotations[EVENT_INCIDENT] for e in _events(core, node, "VigilCordon"))
    assert owners == ["aaaa/7", "another/7"]
