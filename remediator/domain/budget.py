"""The node disruption budget: how many managed nodes may be out of service at once.

Every unavailable node counts, whoever made it so: NotReady, cordoned, or tainted NoSchedule or
NoExecute, plus Vigil's own in-flight plans (stricter than medik8s NHC's minHealthy, which does
not count cordons). Percentages are over the nodes Vigil manages (kubernetes.node_selector).
Per-pool budgets group the managed nodes by a label, each pool with its own limits and floor, so
that a storm in one pool cannot use up another pool's repairs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from remediator.domain.models import ClusterView, NodeView

NO_LABEL = "(unlabelled)"


@dataclass(frozen=True)
class Limits:
    """max_nodes and max_percent (of the pool's nodes, rounded down) cap what is out at once;
    min_nodes is the floor that lets a small pool repair one node where a percentage allows none."""
    max_nodes: int | None = None
    max_percent: float | None = None
    min_nodes: int = 1

    def allowed(self, total: int) -> tuple[int, str]:
        limits = []
        if self.max_nodes is not None:
            limits.append((self.max_nodes, f"max_nodes {self.max_nodes}"))
        if self.max_percent is not None:
            n = math.floor(total * self.max_percent / 100)
            limits.append((n, f"max_percent {self.max_percent:g}% of {total} = {n}"))
        allowed = max(min([n for n, _ in limits], default=total), self.min_nodes)
        why = ", ".join(w for _, w in limits) or "no node limit"
        return allowed, f"{why}, floor min_nodes {self.min_nodes}"


@dataclass(frozen=True)
class Pools:
    """Per-pool budgets: managed nodes grouped by the value of `label`; `overrides` maps a value
    to its own limits, every other value (and nodes without the label) gets `default`."""
    label: str
    default: Limits = field(default_factory=Limits)
    overrides: Mapping[str, Limits] = field(default_factory=dict)

    def limits(self, pool: str) -> Limits:
        return self.overrides.get(pool, self.default)

    def pool_of(self, node: NodeView) -> str:
        return node.labels.get(self.label, NO_LABEL)


@dataclass(frozen=True)
class Check:
    ok: bool
    unavailable: int
    allowed: int
    total: int
    why: str


def unavailable(cluster: ClusterView, in_flight: Iterable[str]) -> dict[str, str]:
    """Managed nodes out of service now, with why: their own state, or a plan of Vigil's in flight."""
    out, managed = dict(cluster.out_of_service), cluster.managed
    for name in in_flight:
        if name in managed:
            out.setdefault(name, "Vigil plan in flight")
    return out


def check(limits: Limits, names: set[str], out: set[str], after: set[str]) -> Check:
    """`after` (out plus the plan) within limits over `names`? A plan adding no node always passes."""
    allowed, why = limits.allowed(len(names))
    ok = len(after) <= allowed or after == out
    return Check(ok, len(after), allowed, len(names), why)


def gpu_check(max_gpu_percent: float, nodes: Mapping[str, NodeView], after: set[str]) -> tuple[bool, str]:
    total = sum(n.gpus for n in nodes.values())
    out = sum(nodes[n].gpus for n in after if n in nodes)
    allowed = total * max_gpu_percent / 100
    return out <= allowed, f"max_gpu_percent {max_gpu_percent:g}% of {total} GPUs = {allowed:g} ({out} out)"
