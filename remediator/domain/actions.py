"""The action registry: every action type Vigil can take, declared once.

A declaration says which parameters the action takes, what kind of object it changes (its target),
whether it takes a node out of service, whether it can be undone when the alert resolves and by
what, and which budget it consumes. Config validation, the decision core and its rails, the
follow-ups and the metrics all read this registry; the cluster layer binds exactly one executor
function to each declared type (`remediator.cluster.executor`), and a test checks the two agree.

Adding an action is one `ACTIONS.declare(...)` here and one `@EXECUTORS.bind(...)` function there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TARGET_KINDS = ("node", "pod", "workload", "route", "service")
BUDGETS = ("", "nodes", "pod_disruptions", "traffic_shift")


@dataclass(frozen=True)
class ActionType:
    """One action type.

    name: the `type` in vigil.yaml.
    required / optional: its parameter names (params are jinja2 templates over the alert).
    target_kind: what it changes: node | pod | workload | route | service.
    target: the params that name the target, joined by "/" (e.g. ("namespace", "pod") -> "ml/llm-1").
    removes_node: takes the node out of service; counts against the node disruption budget.
    restorable: can be put back when the alert resolves (`restore_on_resolve: true` on the action);
        the executor records the original state in the action's result.
    undo: the action type that undoes this one on resolve (cordon_node -> uncordon_node), if any.
    undoes: it undoes a change (uncordon): the ownership rail applies, Vigil only undoes its own.
    budget: what it consumes: "nodes", "pod_disruptions" (per workload per window),
        "traffic_shift" (percent of a route per window, from `amount_param`) or "".
    amount_param / amount_default: for traffic_shift, the param giving the percentage moved.
    repair: a hardware repair (GPU reset, reboot, replacement): counted by the repeat-offender rule.
    harshness: 1 takes the node out of scheduling, 2 resets a GPU, 3 reboots, 4 replaces or hands it over.
    silenced: a planned disruption: an Alertmanager silence for the node is held around it.
    evicts: it empties the node (a drain, a reboot that drains first, a replacement): the paused rail
        checks the namespaces of the pods on it.
    """
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    target_kind: str = "node"
    target: tuple[str, ...] = ("node",)
    removes_node: bool = False
    restorable: bool = False
    undo: str | None = None
    undoes: bool = False
    budget: str = ""
    amount_param: str | None = None
    amount_default: float = 0.0
    repair: bool = False
    silenced: bool = False
    evicts: bool = False
    harshness: int = 0  # how much of a node it takes (one_repair: a request for no more joins a running ladder)

    def __post_init__(self) -> None:
        if self.target_kind not in TARGET_KINDS:
            raise ValueError(f"{self.name}: target_kind {self.target_kind!r} not in {TARGET_KINDS}")
        if self.budget not in BUDGETS:
            raise ValueError(f"{self.name}: budget {self.budget!r} not in {BUDGETS}")
        if not set(self.target) <= set(self.required):
            raise ValueError(f"{self.name}: target params {self.target} must be required params")

    @property
    def targets_pod(self) -> bool:
        return self.target_kind == "pod"

    @property
    def params(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)

    def target_of(self, params: Mapping[str, Any]) -> str:
        return "/".join(str(params.get(k, "")) for k in self.target)

    def empties(self, params: Mapping[str, Any]) -> bool:
        """Whether this action, with these parameters, empties its node: `evicts`, or a NoExecute taint
        (the taint manager deletes every pod that does not tolerate it)."""
        return self.evicts or (self.name == "taint_node" and str(params.get("effect", "")) == "NoExecute")

    def amount_of(self, params: Mapping[str, Any]) -> float:
        if self.amount_param is None:
            return 0.0
        value = params.get(self.amount_param)
        amount = float(self.amount_default if value in (None, "") else value)
        if not math.isfinite(amount) or amount < 0:  # NaN would pass every budget; a negative one lowers it
            raise ValueError(f"{self.name}: {self.amount_param} must be a finite number >= 0, got {value!r}")
        return amount


class Registry(Mapping[str, ActionType]):
    """Action types by name. A Mapping, so `ACTIONS["cordon_node"]`, `in` and iteration work."""

    def __init__(self) -> None:
        self._types: dict[str, ActionType] = {}

    def declare(self, action: ActionType) -> ActionType:
        if action.name in self._types:
            raise ValueError(f"action {action.name!r} declared twice")
        self._types[action.name] = action
        return action

    def __getitem__(self, name: str) -> ActionType:
        return self._types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def of(self, predicate: str) -> tuple[str, ...]:
        """Names of the types with a true attribute, e.g. ACTIONS.of("removes_node")."""
        return tuple(n for n, a in self._types.items() if getattr(a, predicate))


ACTIONS = Registry()
_WORKLOAD = ("namespace", "name")
_POD = ("namespace", "pod")

ACTIONS.declare(ActionType("cordon_node", ("node",), removes_node=True, undo="uncordon_node", budget="nodes",
                           harshness=1))
ACTIONS.declare(ActionType("uncordon_node", ("node",), ("only_incident",), undoes=True))
ACTIONS.declare(ActionType("taint_node", ("node",), ("key", "value", "effect"), removes_node=True,
                           budget="nodes", harshness=1))
ACTIONS.declare(ActionType("drain_node", ("node",), ("timeout", "force_after", "grace_period", "scope", "uuid"),
                           removes_node=True, undo="uncordon_node", budget="nodes", evicts=True, harshness=1))
# Repairs (remediator/cluster/repair.py, providers.py). A reset takes one GPU, not the node, out.
ACTIONS.declare(ActionType("reset_gpu", ("node", "uuid"), ("gpu", "image", "command", "timeout"), repair=True,
                           silenced=True, harshness=2))
ACTIONS.declare(ActionType("reboot_node", ("node",), ("provider", "image", "command", "timeout", "drain_timeout"),
                           removes_node=True, undo="uncordon_node", budget="nodes", repair=True, silenced=True,
                           evicts=True, harshness=3))
ACTIONS.declare(ActionType("replace_node", ("node",), ("provider",), removes_node=True, budget="nodes",
                           repair=True, evicts=True, harshness=4))
ACTIONS.declare(ActionType("validate_node", ("node",), ("uuid", "gpu", "image", "command", "timeout", "deadline")))
ACTIONS.declare(ActionType("mark_rma_candidate", ("node",), ("reason",), removes_node=True, budget="nodes",
                           harshness=4))
ACTIONS.declare(ActionType("restart_pod", _POD, ("allow_bare", "grace_period", "force_delete"), "pod", _POD,
                           budget="pod_disruptions"))
ACTIONS.declare(ActionType("rollout_restart", _WORKLOAD, ("kind",), "workload", _WORKLOAD))
ACTIONS.declare(ActionType("rollback_deployment", _WORKLOAD, (), "workload", _WORKLOAD))
ACTIONS.declare(ActionType("scale_deployment", _WORKLOAD, ("replicas", "step", "min", "max"), "workload",
                           _WORKLOAD))
ACTIONS.declare(ActionType("quarantine_pod", _POD, ("label", "value"), "pod", _POD, budget="pod_disruptions"))
ACTIONS.declare(ActionType("shift_traffic", ("namespace", "route", "from", "to"),
                           ("step", "rule_index", "restore_on_resolve"), "route", ("namespace", "route"),
                           restorable=True, budget="traffic_shift", amount_param="step", amount_default=100.0))
ACTIONS.declare(ActionType("failover_service", ("namespace", "service", "selector"), ("restore_on_resolve",),
                           "service", ("namespace", "service"), restorable=True))


def target_of(action_type: str, params: Mapping[str, Any]) -> str:
    return ACTIONS[action_type].target_of(params)
