"""The domain's value types: the incident, the cluster view, past and planned actions, the decision.

Pure data (frozen dataclasses); no I/O."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any

PAUSE_ANNOTATION = "vigil.io/remediation"  # value "disabled" on a node or namespace
CORDONED_BY_ANNOTATION = "vigil.io/cordoned-by"  # set by Vigil's own cordon (informational; ownership is managedFields)
INCIDENT_ANNOTATION = "vigil.io/incident"  # the incident a Vigil cordon is for
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
    received_at: dt.datetime | None = None  # when Vigil first recorded it (the stale rail's age is taken there)
    waiting_since: dt.datetime | None = None  # while it waits on a rail: since when (max_wait counts from it)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


FIELD_MANAGER = "vigil-remediator"  # the field manager of every change Vigil makes to a node
HOLDS, DOES_NOT_HOLD, UNKNOWN = "holds", "does_not_hold", "unknown"


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str  # NoSchedule | PreferNoSchedule | NoExecute
    value: str = ""


@dataclass(frozen=True)
class NodeView:
    """One node as the rails see it.

    name, unschedulable (spec.unschedulable), gpus (capacity nvidia.com/gpu), annotations, labels.
    ready: the Ready condition is True (a node without one, or Unknown, is not ready).
    taints: spec.taints.
    managed: inside kubernetes.node_selector (Vigil acts on and budgets over managed nodes only).
    unschedulable_owner: the field manager that owns spec.unschedulable in metadata.managedFields
        ("" when the node is schedulable or no manager is recorded).
    """
    name: str
    unschedulable: bool = False
    gpus: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ready: bool = True
    taints: tuple[Taint, ...] = ()
    managed: bool = True
    unschedulable_owner: str = ""

    @functools.cached_property  # a NodeView lives from one watch event to the next: computed once
    def unavailable(self) -> str:
        """Why the node is out of service ("" when it is not): NotReady, cordoned or tainted."""
        if not self.ready:
            return "NotReady"
        if self.unschedulable:
            return "unschedulable"
        hard = [t for t in self.taints if t.effect in ("NoSchedule", "NoExecute")]
        return f"tainted {hard[0].key}:{hard[0].effect}" if hard else ""

    @property
    def cordon_owner(self) -> str:
        """Who owns the cordon: "vigil:<incident id>" when Vigil's field manager owns
        spec.unschedulable, else the owning manager ("" when the node is schedulable)."""
        if not self.unschedulable:
            return ""
        if self.unschedulable_owner == FIELD_MANAGER:
            return f"vigil:{self.annotations.get(INCIDENT_ANNOTATION, '')}"
        return self.unschedulable_owner or "unknown"


@dataclass(frozen=True)
class PodView:
    """workload: "Kind/namespace/name" of its controller ("" = bare pod); ready: the Ready condition
    is True; node: spec.nodeName; services: "namespace/name" of the Services that select it;
    job: the (multi-node) job it belongs to: its JobSet or LeaderWorkerSet, else its workload."""
    workload: str = ""
    ready: bool = True
    node: str = ""
    services: tuple[str, ...] = ()
    job: str = ""


@dataclass(frozen=True)
class WorkloadView:
    """desired: spec.replicas; ready: its pods whose Ready condition is True."""
    desired: int
    ready: int


@dataclass(frozen=True)
class ClusterView:
    """What the rails know of the cluster, read once per decision batch by the cluster layer.

    nodes: every node, managed or not (NodeView.managed says which are inside node_selector).
    paused_namespaces: namespaces annotated vigil.io/remediation=disabled.
    available: False when the cluster could not be read (explain without a cluster).
    pods: "namespace/pod" -> PodView (pods being deleted are left out).
    workloads: "Kind/namespace/name" -> WorkloadView.
    service_endpoints: "namespace/service" -> the ready pods ("namespace/pod") it selects.
    """
    nodes: dict[str, NodeView] = field(default_factory=dict)
    paused_namespaces: frozenset[str] = frozenset()
    available: bool = True
    pods: dict[str, PodView] = field(default_factory=dict)
    workloads: dict[str, WorkloadView] = field(default_factory=dict)
    service_endpoints: dict[str, frozenset[str]] = field(default_factory=dict)

    # A view is read-only and shared by a tick's decisions (up to 10,000 in a storm): what every
    # budget check derives from the nodes is computed once per view, not once per decision.
    @functools.cached_property
    def managed(self) -> dict[str, NodeView]:
        return {n: v for n, v in self.nodes.items() if v.managed}

    @functools.cached_property
    def jobs(self) -> dict[str, frozenset[str]]:
        """The nodes each pod's job (PodView.job) runs on."""
        on: dict[str, set[str]] = {}
        for pod in self.pods.values():
            if pod.job and pod.node:
                on.setdefault(pod.job, set()).add(pod.node)
        return {job: frozenset(nodes) for job, nodes in on.items()}

    @functools.cached_property
    def jobs_of(self) -> dict[str, tuple[str, ...]]:
        """The jobs with a pod on each node."""
        out: dict[str, set[str]] = {}
        for job, nodes in self.jobs.items():
            for n in nodes:
                out.setdefault(n, set()).add(job)
        return {n: tuple(sorted(jobs)) for n, jobs in out.items()}

    @functools.cached_property
    def out_of_service(self) -> dict[str, str]:
        """Managed nodes out of service by their own state, with why (NotReady, cordoned, tainted)."""
        return {name: n.unavailable for name, n in self.managed.items() if n.unavailable}


@dataclass(frozen=True)
class CheckResult:
    """A guard or verify condition, evaluated by the shell: holds, does_not_hold or unknown
    (Prometheus did not answer). Unknown is not failure: it never escalates."""
    outcome: str
    detail: str = ""

    @property
    def holds(self) -> bool | None:
        return {HOLDS: True, DOES_NOT_HOLD: False}.get(self.outcome)

    @classmethod
    def of(cls, holds: bool | None, detail: str = "") -> CheckResult:
        return cls({True: HOLDS, False: DOES_NOT_HOLD, None: UNKNOWN}[holds], detail)


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
    admitted: bool = True  # its incident's chain has started (an action was claimed): it holds its budget
    done_at: dt.datetime | None = None  # when it finished (the cluster view may lag a change just made)


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
    nodes_out: int  # unavailable managed nodes with the plan (NotReady, cordoned, tainted, in flight)
    nodes_allowed: int
    total_nodes: int  # managed nodes
    pools: tuple[tuple[str, int, int, int], ...] = ()  # (pool, unavailable, allowed, total)


@dataclass(frozen=True)
class Decision:
    outcome: str  # act | dry_run | wait | blocked | defer | no_match | resolved | handed_over
    rule: str | None = None
    actions: tuple[PlannedAction, ...] = ()
    reason: str = ""  # for wait: budget, paused, breaker_open, cooldown, ...; for blocked (refused): stale, ...
    detail: str = ""
    trace: tuple[str, ...] = ()
    not_before: dt.datetime | None = None
    open_breaker: bool = False
    budget: BudgetUse | None = None
    kind: str = "first"  # first | escalation | restore | uncordon: which step of the incident this gates
    step: str = ""  # a wait for approval or a window, a denial: the gated step, "reboot_node(node-7)"
