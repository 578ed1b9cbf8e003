"""The domain's value types: the incident, the cluster view, past and planned actions, the decision.

Pure data (frozen dataclasses); no I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

PAUSE_ANNOTATION = "vigil.io/remediation"  # value "disabled" on a node or namespace
CORDONED_BY_ANNOTATION = "vigil.io/cordoned-by"  # set by Vigil's own cordon; uncordon needs it
LIVE_STATES = ("planned", "running", "succeeded")  # actions that count for cooldowns and rate limits
ATTEMPTED = (*LIVE_STATES, "failed", "blocked")  # what the breaker counts: a storm is attempts, kept or not
IN_FLIGHT = ("planned", "running")


@dataclass(frozen=True)
class Incident:
    fingerprint: str
    starts_at: dt.datetime
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    alert_status: str = "firing"
    id: int | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class NodeView:
    name: str
    unschedulable: bool = False
    gpus: int = 0
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterView:
    nodes: dict[str, NodeView] = field(default_factory=dict)
    paused_namespaces: frozenset[str] = frozenset()
    available: bool = True  # False: the cluster could not be read (explain without a cluster)
    pods: dict[str, str] = field(default_factory=dict)  # "ns/pod" -> its workload "Kind/ns/name" ("" = bare)


@dataclass(frozen=True)
class GuardResult:
    """A rule's guard, evaluated by the shell: holds (True), does not (False), or unavailable (None)."""
    holds: bool | None
    detail: str = ""


@dataclass(frozen=True)
class PastAction:
    incident_id: int
    rule: str
    type: str
    target: str
    at: dt.datetime
    state: str  # planned | running | succeeded | failed | dry_run | cancelled
    incident_firing: bool = True
    workload: str = ""  # for pod actions: the pod's workload, for the per-workload budget
    amount: float = 0.0  # for shift_traffic: the share of traffic moved (percent)


@dataclass(frozen=True)
class SafetyState:
    paused: bool = False
    breaker_open: bool = False


@dataclass(frozen=True)
class PlannedAction:
    type: str
    target: str
    params: dict[str, Any]
    workload: str = ""
    amount: float = 0.0


@dataclass(frozen=True)
class BudgetUse:
    nodes_out: int
    nodes_allowed: int
    total_nodes: int


@dataclass(frozen=True)
class Decision:
    outcome: str  # act | dry_run | blocked | defer | no_match | resolved
    rule: str | None = None
    actions: tuple[PlannedAction, ...] = ()
    reason: str = ""  # for blocked: cooldown, rate_limit, budget, breaker_open, paused, stale, ...
    detail: str = ""
    trace: tuple[str, ...] = ()
    not_before: dt.datetime | None = None
    open_breaker: bool = False
    budget: BudgetUse | None = None
