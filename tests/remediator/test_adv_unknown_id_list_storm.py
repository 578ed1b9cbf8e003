"""Adversarial: GET /api/incidents/<id> for ids the Kubernetes ledger does not hold (a typo, a
script polling an old id, anyone with the read role). Each miss re-listed every VigilIncident
object from the API server (thousands of objects with a week's retention): one cheap request,
one full LIST. A miss re-lists only if the cache changed since the last miss re-list; an incident
created by another replica is still found. Real API server and CRDs; the API object is the real
client, wrapped only to count its LIST calls."""

from __future__ import annotations

import datetime as dt
import json

from kubernetes import client

from remediator.cluster.incidents_api import IncidentsAPI
from remediator.domain.payload import parse
from remediator.store.kubernetes import KubernetesLedger
from tests.k8s.controlplane import wait_until

from .payloads import alert, body, xid_labels


class CountingAPI(IncidentsAPI):
    lists = 0

    def list(self, plural: str):
        self.lists += 1
        return super().list(plural)


def test_unknown_ids_do_not_relist_everything(vigil_crds, unique):
    ns = f"ledger-{unique}"
    client.CoreV1Api(vigil_crds.api_client()).create_namespace({"metadata": {"name": ns}})
    api = CountingAPI(vigil_crds.api_client(), ns)
    reader = KubernetesLedger(api)
    writer = KubernetesLedger(IncidentsAPI(vigil_crds.api_client(), ns), watch=False)
    try:
        before = api.lists
        for i in range(20):
            assert reader.get_incident(10**12 + i) is None
        assert api.lists - before <= 1, f"{api.lists - before} LISTs for 20 unknown ids"
        now = dt.datetime.now(dt.UTC)
        writer.record(parse(json.dumps(body(alert(xid_labels("n1")))).encode()).alerts, now)
        [inc] = writer.due(now)
        found = wait_until(lambda: reader.get_incident(inc.id), 30, what="the other replica's incident")
        assert found["labels"]["node"] == "n1"
    finally:
        reader.close()
        writer.close()
