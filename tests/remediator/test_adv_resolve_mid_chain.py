"""Adversarial: the alert resolves while the first action of a chain is running (cordon running,
drain planned). The promise: the running action completes, the rest is cancelled, and an incident
that changed the cluster is never `cancelled`: it is `succeeded` (resolved_during_execution) and
its on_resolved follow-ups (the uncordon) run. The Kubernetes ledger marked the incident cancelled
at the resolve, while the cordon was still running, so it never appeared among the follow-ups and
the node stayed cordoned for good. Both backends (real SQLite; VigilIncident objects on the real
API server)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from kubernetes import client

from remediator.domain.models import Decision, PlannedAction
from remediator.domain.payload import parse
from remediator.store.ledger import SQLiteLedger

from .ledgers import open_kubernetes
from .payloads import alert, body, xid_labels

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "kubernetes"])
def ledger(request, tmp_path, unique) -> Iterator[object]:
    if request.param == "sqlite":
        lg = SQLiteLedger(str(tmp_path / "ledger.db"))
    else:
        cp = request.getfixturevalue("vigil_crds")
        ns = f"ledger-{unique}"
        client.CoreV1Api(cp.api_client()).create_namespace({"metadata": {"name": ns}})
        lg = open_kubernetes(cp, ns)
    yield lg
    lg.close()


def _alerts(a: dict):
    return parse(json.dumps(body(a)).encode()).alerts


def test_a_resolve_while_the_first_action_runs_keeps_the_incident_and_its_follow_ups(ledger):
    firing = alert(xid_labels("n1"), starts_at=NOW - dt.timedelta(minutes=1))
    ledger.record(_alerts(firing), NOW)
    [inc] = ledger.due(NOW)
    cordon, _drain = ledger.save_decision(inc.id, Decision("act", "xid", (
        PlannedAction("cordon_node", "n1", {"node": "n1"}), PlannedAction("drain_node", "n1", {"node": "n1"}))), NOW)
    assert ledger.claim_action(cordon, NOW) is not None  # the cordon is running ...
    rec = ledger.record(_alerts(dict(firing, status="resolved")), NOW + dt.timedelta(seconds=1))  # ... resolve
    assert rec.resolved == 1
    mid = ledger.get_incident(inc.id)
    assert mid["status"] != "cancelled", "cancelled while an action was still running"
    assert [a["state"] for a in mid["actions"]] == ["running", "cancelled"]
    ledger.finish_action(cordon, "succeeded", {"detail": "cordoned"}, NOW + dt.timedelta(seconds=2))
    done = ledger.get_incident(inc.id)
    assert done["status"] == "succeeded", (done["status"], done["reason"])
    assert [i["id"] for i in ledger.resolved_followups()] == [inc.id], "the uncordon on resolve would never run"
