"""Adversarial: a chain held at admission after its first steps ran (a pause set mid-chain) is not
taken up at the resume: the re-decision waits for the rule's cooldown (30 min in the example policy)
and rate limit, counted from *its own* cordon.

`Runner._requeue` cancels the rest of the chain and the incident waits; when the pause lifts, the tick
re-decides it with `decide` against the full history. The `cooldown` and `rate_limit` rails
(remediator/domain/rails.py) count `world.live()` without leaving out the incident's own actions (only
the admission, `admission_world`, does), so the incident's own succeeded cordon holds it: the node
stays cordoned and half-drained for 30 minutes after the resume, not "within 30 s of the resume".
Pure core, example policy."""

from __future__ import annotations

import dataclasses
import datetime as dt

from remediator.config import load_config
from remediator.domain.decide import decide
from remediator.domain.models import (
    FIELD_MANAGER,
    INCIDENT_ANNOTATION,
    ClusterView,
    Incident,
    NodeView,
    PastAction,
    SafetyState,
)

NOW = dt.datetime(2026, 12, 7, 3, 10, tzinfo=dt.UTC)


def test_a_requeued_chain_is_not_held_by_its_own_cooldown_after_the_resume(monkeypatch):
    for var in ("VIGIL_WEBHOOK_TOKEN", "VIGIL_ADMIN_TOKEN", "VIGIL_VIEWER_PASSWORD"):
        monkeypatch.setenv(var, "x" * 32)
    config = load_config("remediator/examples/vigil.yaml")
    safety = dataclasses.replace(config.safety, dry_run=False)
    incident = Incident("ab12", NOW - dt.timedelta(minutes=5),
                        {"alertname": "GpuXidCritical", "xid": "79", "node": "n1", "uuid": "GPU-1", "gpu": "0",
                         "severity": "critical"}, id=7, waiting_since=NOW - dt.timedelta(minutes=2))
    # its cordon ran 3 minutes ago; its drain was held by a pause at admission (chain requeued); now resumed
    history = [PastAction(7, "gpu-xid-node-fatal", "cordon_node", "n1", NOW - dt.timedelta(minutes=3), "succeeded",
                          done_at=NOW - dt.timedelta(minutes=3)),
               PastAction(7, "gpu-xid-node-fatal", "drain_node", "n1", NOW - dt.timedelta(minutes=3), "cancelled")]
    nodes = {f"n{i}": NodeView(f"n{i}", managed=True) for i in range(1, 9)}
    nodes["n1"] = NodeView("n1", managed=True, unschedulable=True, unschedulable_owner=FIELD_MANAGER,
                           annotations={INCIDENT_ANNOTATION: "7"})
    decision = decide(incident, config.rules, history, ClusterView(nodes=nodes), safety, SafetyState(), NOW)
    assert decision.reason not in ("cooldown", "rate_limit"), (
        f"after the resume the chain waits on its own earlier cordon: {decision.outcome} ({decision.reason}): "
        f"{decision.detail}")
